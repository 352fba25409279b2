"""Walking the chain: recompute each entry's hash from its columns, check the
links, the seals (with the audit keys) and the sealed checkpoints, and stop at
the first entry that does not hold, saying how it broke."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

import struct

from tradeguard.audit.chain import SEAL_LABEL, HmacSha256, checkpoint_seal, entry_bytes

_pack = struct.Struct(">I").pack
#: the 4-byte length prefixes of short fields (every column but a large payload): a lookup, not a call
_PREFIXES = [_pack(n) for n in range(1 << 14)]

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
    and link to *prev_hash*. Text columns arrive as UTF-8 ``bytes`` (no decode
    and re-encode: this loop is the verification speed). *keys* (key id -> audit
    key) enables seal checks; ``find(column, value)`` returns the seqs of rows
    whose ``hash`` or ``prev_hash`` column holds *value* (only to explain a failure)."""
    report = VerifyReport(keyed=keys is not None)
    sha256 = hashlib.sha256
    pack = _pack
    P = _PREFIXES
    PN = len(_PREFIXES)
    label = SEAL_LABEL
    bkeys = {k.encode(): HmacSha256(v).hexdigest for k, v in keys.items()} if keys is not None else None
    cps = {seq: cp for seq, cp in checkpoints.items()}
    expected = start_seq
    prev = prev_hash.encode()
    sealed_through = None
    seals = unsealed = 0
    row = None

    def stop(seq: int, problem: str, message: str) -> VerifyReport:
        _sync(report, expected - start_seq, start_seq, expected - 1, prev.decode(), seals, unsealed, sealed_through)
        return report.fail(seq, problem, message)

    for batch in batches:
        for row in batch:
            seq, ts, actor, action, subject, payload, prev_stored, stored, seal, key_id = row
            if seq != expected:
                if seq > expected:
                    missing = f"entry {expected}" if seq == expected + 1 else f"entries {expected}-{seq - 1}"
                    return stop(expected, "missing", f"{missing} missing (the chain jumps to {seq})")
                return stop(seq, "reordered", f"entry {seq} appears after entry {expected - 1}")
            a = b"%d" % seq
            n = len(payload)
            if sha256(b"".join((P[len(a)], a, P[len(ts)], ts, P[len(actor)], actor, P[len(action)], action,
                                P[len(subject)], subject, P[n] if n < PN else pack(n), payload, P[len(prev_stored)],
                                prev_stored))).hexdigest().encode() != stored:
                _sync(report, expected - start_seq, start_seq, expected - 1, prev.decode(), seals, unsealed, sealed_through)
                return _content_problem(report, seq, tuple(v.decode() for v in (ts, actor, action, subject, payload, prev_stored)),
                                        stored.decode(), find)
            if prev_stored != prev:
                return stop(seq, "broken_link", f"entry {seq}: broken link (its previous-hash is not the hash of entry "
                                                f"{seq - 1}; the entries before it were changed or replaced)")
            if seal is None:
                unsealed += 1
            elif bkeys is not None:
                mac = bkeys.get(key_id)
                if mac is None:
                    return stop(seq, "unknown_key", f"entry {seq}: sealed with unknown key {key_id.decode()!r}")
                if mac(label + stored).encode() != seal:
                    return stop(seq, "bad_seal", f"entry {seq}: seal does not match (the entry was rewritten with a "
                                                 "recomputed hash)")
                seals += 1
                sealed_through = seq
            if seq in cps:
                for cp in cps[seq]:
                    if cp.head_hash.encode() != stored:
                        return stop(seq, "changed", f"entry {seq}: hash differs from the sealed checkpoint at seq {seq} "
                                                    "(the chain was rewritten up to here)")
                    if keys is not None:
                        if not _checkpoint_ok(keys, cp):
                            return stop(seq, "bad_checkpoint", f"checkpoint at seq {seq}: seal does not match")
                        sealed_through = seq
                    report.checkpoints_checked += 1
            prev = stored
            expected += 1
    _sync(report, expected - start_seq, start_seq, expected - 1, prev.decode(), seals, unsealed, sealed_through)
    beyond = [cp for seq, cps_ in checkpoints.items() if seq > expected - 1 for cp in cps_]
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
