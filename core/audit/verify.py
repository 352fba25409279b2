"""Walking the chain: recompute each entry's hash from its columns, check the
links, the seals (with the audit keys) and the sealed checkpoints, and stop at
the first entry that does not hold, saying how it broke."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

from tradeguard.audit.chain import SEAL_LABEL, checkpoint_seal, entry_bytes

#: How an entry can fail, for ``--json`` consumers.
PROBLEMS = ("changed", "missing", "reordered", "broken_link", "bad_seal", "unknown_key", "truncated",
            "bad_checkpoint", "unexpected_head")


@dataclass
class VerifyReport:
    """The outcome of `AuditTrail.verify`."""

    ok: bool = True
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    keyed: bool = False  # were seals checked (vault unlocked)?
    seals_checked: int = 0
    unsealed: int = 0
    sealed_through: int | None = None  # the last seq a valid seal (entry or checkpoint) covers
    checkpoints_checked: int = 0
    bad_seq: int | None = None
    problem: str | None = None
    message: str = ""

    def fail(self, seq: int | None, problem: str, message: str) -> "VerifyReport":
        self.ok, self.bad_seq, self.problem, self.message = False, seq, problem, message
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckpointRow:
    seq: int
    head_hash: str
    seal: str
    key_id: str
    reason: str


Row = tuple  # (seq, ts, actor, action, subject, payload, prev_hash, hash, seal, key_id)


def walk(
    batches: Iterable[list[Row]],
    *,
    start_seq: int,
    prev_hash: str,
    keys: Mapping[str, bytes] | None,
    checkpoints: Mapping[int, list[CheckpointRow]],
    find: Callable[[str, str], list[int]],
) -> VerifyReport:
    """Verify *batches* of rows (ascending seq) that should start at *start_seq*
    and link to *prev_hash*. *keys* (key id -> audit key) enables seal checks;
    ``find(column, value)`` returns the seqs of rows whose ``hash`` or
    ``prev_hash`` column holds *value* (used only to explain a failure)."""
    report = VerifyReport(keyed=keys is not None)
    sha256 = hashlib.sha256
    digest = hmac.digest
    expected = start_seq
    prev = prev_hash
    sealed_through = None
    seals = unsealed = 0
    for batch in batches:
        for seq, ts, actor, action, subject, payload, prev_stored, stored, seal, key_id in batch:
            if seq != expected:
                _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
                if seq > expected:
                    missing = f"entry {expected}" if seq == expected + 1 else f"entries {expected}-{seq - 1}"
                    return report.fail(expected, "missing", f"{missing} missing (the chain jumps to {seq})")
                return report.fail(seq, "reordered", f"entry {seq} appears after entry {expected - 1}")
            if sha256(entry_bytes(seq, ts, actor, action, subject, payload, prev_stored)).hexdigest() != stored:
                _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
                return _content_problem(report, seq, (ts, actor, action, subject, payload, prev_stored), stored, find)
            if prev_stored != prev:
                _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
                return report.fail(seq, "broken_link",
                                   f"entry {seq}: broken link (its previous-hash is not the hash of entry {seq - 1}; "
                                   "the entries before it were changed or replaced)")
            if seal is None:
                unsealed += 1
            elif keys is not None:
                key = keys.get(key_id)
                if key is None:
                    _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
                    return report.fail(seq, "unknown_key", f"entry {seq}: sealed with unknown key {key_id!r}")
                if digest(key, SEAL_LABEL + stored.encode(), "sha256").hex() != seal:
                    _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
                    return report.fail(seq, "bad_seal",
                                       f"entry {seq}: seal does not match (the entry was rewritten with a recomputed hash)")
                seals += 1
                sealed_through = seq
            if seq in checkpoints:
                for cp in checkpoints[seq]:
                    if cp.head_hash != stored:
                        _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
                        return report.fail(seq, "changed",
                                           f"entry {seq}: hash differs from the sealed checkpoint at seq {seq} "
                                           "(the chain was rewritten up to here)")
                    if keys is not None:
                        if not _checkpoint_ok(keys, cp):
                            _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
                            return report.fail(seq, "bad_checkpoint", f"checkpoint at seq {seq}: seal does not match")
                        sealed_through = seq
                    report.checkpoints_checked += 1
            prev = stored
            expected += 1
    _sync(report, expected - start_seq, start_seq, expected - 1, prev, seals, unsealed, sealed_through)
    beyond = [cp for seq, cps in checkpoints.items() if seq > expected - 1 for cp in cps]
    if beyond:
        cp = max(beyond, key=lambda c: c.seq)
        if keys is None or _checkpoint_ok(keys, cp):
            return report.fail(expected, "truncated",
                               f"the chain ends at entry {expected - 1} but a sealed checkpoint says it reached {cp.seq}: "
                               "the tail was deleted")
    return report


def _checkpoint_ok(keys: Mapping[str, bytes], cp: CheckpointRow) -> bool:
    key = keys.get(cp.key_id)
    return key is not None and hmac.compare_digest(checkpoint_seal(key, cp.seq, cp.head_hash, cp.reason), cp.seal)


def _sync(report: VerifyReport, count: int, first: int, last: int, head: str, seals: int, unsealed: int,
          sealed_through: int | None) -> None:
    report.entries = count
    report.first_seq = first if count else None
    report.last_seq = last if count else None
    report.head = head
    report.seals_checked = seals
    report.unsealed = unsealed
    report.sealed_through = sealed_through


def _content_problem(report: VerifyReport, seq: int, fields: tuple, stored: str,
                     find: Callable[[str, str], list[int]]) -> VerifyReport:
    """The recomputed hash differs: a moved entry (its own hash fits another seq) or changed content."""
    ts, actor, action, subject, payload, prev_stored = fields
    candidates = {s - 1 for s in find("prev_hash", stored)} | {s + 1 for s in find("hash", prev_stored)}
    for original_seq in sorted(candidates - {seq}):
        if hashlib.sha256(entry_bytes(original_seq, ts, actor, action, subject, payload, prev_stored)).hexdigest() == stored:
            return report.fail(seq, "reordered",
                               f"entry {seq}: reordered (it holds the entry recorded as {original_seq})")
    return report.fail(seq, "changed", f"entry {seq}: content changed (its hash no longer matches its columns)")
