"""The audit trail: append-only, hash-chained, sealed with the audit data key.

Call ``audit.append(actor, action, subject, payload)`` inside the transaction
of the change it records. ``engine.audit`` (`AuditTrail`) verifies, exports,
tails and checkpoints the chain. The encoding is documented in docs/audit.md.
"""

from __future__ import annotations

from tradeguard.audit.chain import GENESIS, append, entry_bytes, entry_hash, seal_of
from tradeguard.audit.service import AuditTrail, Checkpoint, Head
from tradeguard.audit.verify import VerifyReport

__all__ = ["GENESIS", "AuditTrail", "Checkpoint", "Head", "VerifyReport", "append", "entry_bytes", "entry_hash",
           "seal_of"]
