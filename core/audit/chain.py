"""The audit trail: append-only, hash-chained (minimal version; sealing and
verification come with the vault/audit work)."""

from __future__ import annotations

import hashlib
from typing import Any

import peewee

from tradeguard.clock import isoformat, utcnow
from tradeguard.storage.fields import dumps
from tradeguard.storage.models import AuditLog

GENESIS = "0" * 64


def entry_bytes(seq: int, ts: str, actor: str, action: str, subject: str, payload: str, prev_hash: str) -> bytes:
    """Canonical encoding of one entry: length-prefixed UTF-8 fields in fixed order."""
    parts = [str(seq), ts, actor, action, subject, payload, prev_hash]
    out = bytearray()
    for part in parts:
        data = part.encode("utf-8")
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def append(actor: str, action: str, subject: str, payload: dict[str, Any] | None = None) -> AuditLog:
    """Append one entry; call inside the transaction of the change it records."""
    last = AuditLog.select(AuditLog.seq, AuditLog.hash).order_by(AuditLog.seq.desc()).first()
    seq = (last.seq + 1) if last else 1
    prev = last.hash if last else GENESIS
    ts = isoformat(utcnow())
    text = dumps(payload or {})
    digest = hashlib.sha256(entry_bytes(seq, ts, actor, action, subject, text, prev)).hexdigest()
    return AuditLog.create(seq=seq, ts=ts, actor=actor, action=action, subject=subject, payload=text, prev_hash=prev, hash=digest)
