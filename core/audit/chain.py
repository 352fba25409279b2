"""The chain itself: the canonical encoding of an entry, its hash, its seal,
and `append`.

Canonical encoding (docs/audit.md): the seven fields ``seq, ts, actor,
action, subject, payload, prev_hash`` as UTF-8, each preceded by its length
as a 4-byte big-endian integer. ``ts`` is stored as fixed-width text
(``2026-01-02T03:04:05.000006Z``) and ``payload`` as the exact JSON text that
was hashed, so rebuilding the bytes from the columns is cheap and identical on
every backend. ``hash = sha256(encoding)`` (hex); ``seal = HMAC-SHA256(audit
data key, "tradeguard/audit-seal/v1" NUL hash)`` (hex).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import weakref
from typing import Any

import peewee

from tradeguard.clock import isoformat, utcnow
from tradeguard.storage import backend_of, database, write_transaction  # noqa: F401 (re-exported)
from tradeguard.storage.fields import dumps
from tradeguard.storage.models import AuditLog

GENESIS = "0" * 64
SEAL_LABEL = b"tradeguard/audit-seal/v1\x00"
CHECKPOINT_LABEL = b"tradeguard/audit-checkpoint/v1\x00"
#: pg_advisory_xact_lock key guarding the audit head ("tgaudit" in ASCII).
HEAD_LOCK_KEY = 0x7467617564697400 >> 8

_pack = struct.Struct(">I").pack
_MAX = {"actor": 100, "action": 64, "subject": 200}


def entry_bytes(seq: int, ts: str, actor: str, action: str, subject: str, payload: str, prev_hash: str) -> bytes:
    """Canonical encoding of one entry: length-prefixed UTF-8 fields in fixed order."""
    a = str(seq).encode()
    b = ts.encode()
    c = actor.encode()
    d = action.encode()
    e = subject.encode()
    f = payload.encode()
    g = prev_hash.encode()
    return b"".join((_pack(len(a)), a, _pack(len(b)), b, _pack(len(c)), c, _pack(len(d)), d,
                     _pack(len(e)), e, _pack(len(f)), f, _pack(len(g)), g))


def entry_hash(seq: int, ts: str, actor: str, action: str, subject: str, payload: str, prev_hash: str) -> str:
    """sha256 of the canonical encoding, hex."""
    return hashlib.sha256(entry_bytes(seq, ts, actor, action, subject, payload, prev_hash)).hexdigest()


class HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the padded key states computed once: twice as
    fast per message as `hmac.digest`, which redoes the key setup every call."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __repr__(self) -> str:
        return "<HmacSha256 (redacted)>"


def seal_of(key: bytes, entry_hash_hex: str) -> str:
    """The HMAC seal of one entry (hex)."""
    return hmac.digest(key, SEAL_LABEL + entry_hash_hex.encode("ascii"), "sha256").hex()


def checkpoint_seal(key: bytes, seq: int, head_hash: str, reason: str) -> str:
    """The HMAC of a checkpoint: the chain up to *seq* ends in *head_hash* (hex)."""
    message = f"{seq}\x00{head_hash}\x00{reason}".encode("utf-8")
    return hmac.digest(key, CHECKPOINT_LABEL + message, "sha256").hex()


# -- sealing keys, per database -------------------------------------------------------------


class Sealer:
    """The active audit data key of one open database (set while its vault is unlocked)."""

    __slots__ = ("key_id", "_mac")

    def __init__(self, key_id: str, key: bytes):
        self.key_id = key_id
        self._mac = HmacSha256(key)

    def seal(self, entry_hash_hex: str) -> str:
        """The seal of an entry with this hash (same as `seal_of`)."""
        return self._mac.hexdigest(SEAL_LABEL + entry_hash_hex.encode("ascii"))

    def __repr__(self) -> str:
        return f"<Sealer {self.key_id} (redacted)>"


_sealers: "weakref.WeakKeyDictionary[peewee.Database, Sealer]" = weakref.WeakKeyDictionary()


def set_sealer(db: peewee.Database, key_id: str, key: bytes) -> None:
    """Seal entries appended to *db* from now on (the vault was unlocked)."""
    _sealers[db] = Sealer(key_id, key)


def clear_sealer(db: peewee.Database) -> None:
    """Stop sealing entries appended to *db* (the vault was locked or the Engine closed)."""
    _sealers.pop(db, None)


def sealer_for(db: peewee.Database) -> Sealer | None:
    return _sealers.get(db)


# -- the head lock and append -----------------------------------------------------------------


def lock_head(db: peewee.Database) -> tuple[int, str]:
    """Take the audit head lock (inside a transaction) and return ``(seq, hash)`` of the head.

    PostgreSQL: a transaction-scoped advisory lock; SQLite: the writer lock
    that ``BEGIN IMMEDIATE`` already holds; MySQL: ``FOR UPDATE`` on the last
    row. Call it last in a transaction, after any account locks.
    """
    backend = backend_of(db)
    head_sql = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
    if backend == "postgres":
        # one round trip, two statements: the SELECT takes its snapshot after the lock is granted
        row = db.execute_sql(f"SELECT pg_advisory_xact_lock(%s); {head_sql}", (HEAD_LOCK_KEY,)).fetchone()
    else:
        row = db.execute_sql(head_sql + (" FOR UPDATE" if backend == "mysql" else "")).fetchone()
    return (int(row[0]), row[1]) if row else (0, GENESIS)


def _clean(text: str, field: str) -> str:
    text = str(text).replace("\x00", "\ufffd")
    return text[: _MAX[field]]


_INSERT = ("INSERT INTO audit_log (seq, ts, actor, action, subject, payload, prev_hash, hash, seal, key_id) "
           "VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})")


def append(actor: str, action: str, subject: str, payload: dict[str, Any] | None = None) -> AuditLog:
    """Append one entry; call inside the transaction of the change it records.

    The entry is sealed if this database's vault is unlocked, chained only
    otherwise. Outside a transaction the entry gets one of its own.
    """
    db = database.obj
    actor, action, subject = _clean(actor, "actor"), _clean(action, "action"), _clean(subject, "subject")
    text = dumps(payload or {})
    if db.in_transaction():
        return _append(db, actor, action, subject, text)
    with write_transaction(db):
        return _append(db, actor, action, subject, text)


def append_many(entries: list[tuple[str, str, str, dict[str, Any] | None]]) -> list[AuditLog]:
    """Append several ``(actor, action, subject, payload)`` entries in order, inside the current
    transaction, reading the head once (the head lock is held to the end of the transaction)."""
    return [AuditLog(**dict(zip(_COLUMNS, values))) for values in append_entries(entries)]


def append_entries(entries: list[tuple[str, str, str, dict[str, Any] | None]]) -> list[tuple]:
    """`append_many` returning each entry's stored column values (no model objects: the order hot path)."""
    db = database.obj
    if not db.in_transaction():
        with write_transaction(db):
            return append_entries(entries)
    out: list[tuple] = []
    head = None
    for actor, action, subject, payload in entries:
        values = _append_values(db, _clean(actor, "actor"), _clean(action, "action"), _clean(subject, "subject"),
                                dumps(payload or {}), head=head)
        head = (values[0], values[7])
        out.append(values)
    return out


_COLUMNS = ("seq", "ts", "actor", "action", "subject", "payload", "prev_hash", "hash", "seal", "key_id")


def _append(db: peewee.Database, actor: str, action: str, subject: str, text: str,
            head: tuple[int, str] | None = None) -> AuditLog:
    return AuditLog(**dict(zip(_COLUMNS, _append_values(db, actor, action, subject, text, head))))


def _append_values(db: peewee.Database, actor: str, action: str, subject: str, text: str,
                   head: tuple[int, str] | None = None) -> tuple:
    last_seq, prev = head if head is not None else lock_head(db)
    seq = last_seq + 1
    ts = isoformat(utcnow())
    digest = entry_hash(seq, ts, actor, action, subject, text, prev)
    sealer = _sealers.get(db)
    seal, key_id = (sealer.seal(digest), sealer.key_id) if sealer else (None, None)
    values = (seq, ts, actor, action, subject, text, prev, digest, seal, key_id)
    # raw SQL: building the INSERT through the model costs ten times the hashing
    db.execute_sql(_INSERT.format(db.param), values)
    return values
