"""`engine.audit`: verify, export, tail, checkpoints and the head."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from tradeguard.audit.chain import GENESIS, append, checkpoint_seal, lock_head, write_transaction
from tradeguard.audit.verify import CheckpointRow, VerifyReport, walk
from tradeguard.clock import isoformat, parse_iso
from tradeguard.errors import ValidationError, VaultLocked
from tradeguard.service import Service, in_engine_db
from tradeguard.storage import backend_of
from tradeguard.storage.models import AuditCheckpoint

log = logging.getLogger("tradeguard.audit")

COLUMNS = ("seq", "ts", "actor", "action", "subject", "payload", "prev_hash", "hash", "seal", "key_id")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit_log"
BATCH = 20000
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Head:
    """The newest entry: its sequence number and hash (0 and GENESIS for an empty chain)."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Checkpoint:
    """A sealed statement that the chain up to ``seq`` ends in ``head_hash``."""

    seq: int
    head_hash: str
    key_id: str
    reason: str


def _encoded(row: tuple) -> tuple:
    return (row[0], *(None if v is None else v.encode("utf-8") for v in row[1:]))


def entry_dict(row: tuple) -> dict[str, Any]:
    """One entry as exported: every column, ``payload`` as the exact stored JSON text."""
    return dict(zip(COLUMNS, row))


class AuditTrail(Service):
    """The Engine's audit API (``engine.audit``)."""

    # -- reading -------------------------------------------------------------------------------

    @in_engine_db
    def head(self) -> Head:
        """The newest entry's seq and hash."""
        row = self.engine.db.execute_sql("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return Head(int(row[0]), row[1]) if row else Head(0, GENESIS)

    def _batches(self, start: int, *, where: str = "", params: tuple = (), raw: bool = False) -> Iterator[list[tuple]]:
        """Rows from *start* on, in seq order, in batches (keyset pagination: constant memory).

        *raw*: text columns as UTF-8 bytes (what verification hashes); SQLite
        hands them over without decoding at all.
        """
        db = self.engine.db
        p = db.param
        after = start - 1
        sqlite = backend_of(db) == "sqlite"
        while True:
            sql = f"{_SELECT} WHERE seq > {p}{where} ORDER BY seq LIMIT {BATCH}"
            if raw and sqlite:
                conn = db.connection()
                saved, conn.text_factory = conn.text_factory, bytes
                try:
                    rows = db.execute_sql(sql, (after, *params)).fetchall()
                finally:
                    conn.text_factory = saved
            elif raw and backend_of(db) == "postgres":
                import psycopg2.extensions

                cursor = db.cursor()
                psycopg2.extensions.register_type(psycopg2.extensions.BYTES, cursor)  # text as undecoded bytes
                cursor.execute(sql, (after, *params))
                rows = cursor.fetchall()
            else:
                rows = db.execute_sql(sql, (after, *params)).fetchall()
                if raw:
                    rows = [_encoded(r) for r in rows]
            if not rows:
                return
            yield rows
            after = rows[-1][0]
            if len(rows) < BATCH:
                return

    @in_engine_db
    def tail(self, n: int = 20, *, after_seq: int | None = None) -> list[dict[str, Any]]:
        """The last *n* entries, oldest first (or every entry after *after_seq*, for ``--follow``)."""
        db = self.engine.db
        p = db.param
        if after_seq is not None:
            rows = db.execute_sql(f"{_SELECT} WHERE seq > {p} ORDER BY seq LIMIT {BATCH}", (after_seq,)).fetchall()
        else:
            if n < 1:
                raise ValidationError(f"-n: expected a positive number, got {n}")
            rows = db.execute_sql(f"{_SELECT} ORDER BY seq DESC LIMIT {p}", (n,)).fetchall()[::-1]
        return [entry_dict(r) for r in rows]

    def export(self, *, since: datetime | str | None = None, action: str | None = None,
               from_seq: int = 1, actor: str = "cli") -> Iterator[dict[str, Any]]:
        """Stream entries (canonical columns) from *from_seq*, optionally since a time and
        for one action (``order.*`` matches a prefix). The export itself is audited."""
        self.engine._check_open()
        where, params = "", []
        p = self.engine.db.param
        if since is not None:
            try:
                ts = isoformat(parse_iso(since) if isinstance(since, str) else since)
            except ValueError:
                raise ValidationError(f"since: expected an ISO date or time, got {since!r}") from None
            since = ts
            where += f" AND ts >= {p}"
            params.append(ts)
        if action:
            if action.endswith("*"):
                where += f" AND action LIKE {p}"
                params.append(action[:-1].replace("%", r"\%").replace("_", r"\_") + "%")
            else:
                where += f" AND action = {p}"
                params.append(action)
        count = 0
        from tradeguard.storage import use_database

        with use_database(self.engine.db):
            for batch in self._batches(from_seq, where=where, params=tuple(params)):
                for row in batch:
                    count += 1
                    yield entry_dict(row)
            append(actor, "audit.export", "audit", {"since": since, "action": action, "from_seq": from_seq,
                                                    "entries": count})

    # -- verification -----------------------------------------------------------------------------

    @in_engine_db
    def verify(self, *, from_seq: int = 1, expect_head: str | None = None, actor: str = "cli",
               record: bool = True) -> VerifyReport:
        """Walk the chain from *from_seq*: hashes, links, and (vault unlocked) seals and checkpoints.

        *expect_head*: a head hash recorded elsewhere earlier (a backup, a
        ticket); it must still be in the chain, or the tail was truncated or rewritten.
        """
        if from_seq < 1:
            raise ValidationError(f"--from: expected a sequence number >= 1, got {from_seq}")
        if expect_head is not None and not _HASH.match(expect_head.strip().lower()):
            raise ValidationError("--expect-head: expected a 64-character hex hash")
        db = self.engine.db
        p = db.param
        keys = self.engine.vault.audit_keys()
        if from_seq > 1 and from_seq > self.head().seq:
            raise ValidationError(f"--from {from_seq}: the chain ends at entry {self.head().seq}")
        if from_seq == 1:
            prev = GENESIS
        else:
            row = db.execute_sql(f"SELECT hash FROM audit_log WHERE seq = {p}", (from_seq - 1,)).fetchone()
            if row is None:
                report = VerifyReport(keyed=keys is not None)
                report.fail(from_seq - 1, "missing", f"entry {from_seq - 1} (just before --from {from_seq}) is missing")
                return self._record(report, actor, record)
            prev = row[0]
        checkpoints: dict[int, list[CheckpointRow]] = {}
        for cp in AuditCheckpoint.select().where(AuditCheckpoint.seq >= from_seq):
            checkpoints.setdefault(cp.seq, []).append(CheckpointRow(cp.seq, cp.head_hash, cp.seal, cp.key_id, cp.reason))

        def find(column: str, value: str) -> list[int]:
            return [r[0] for r in db.execute_sql(f"SELECT seq FROM audit_log WHERE {column} = {p}", (value,)).fetchall()]

        report = walk(self._batches(from_seq, raw=True), start_seq=from_seq, prev_hash=prev, keys=keys,
                      checkpoints=checkpoints, find=find)
        if report.ok and expect_head is not None:
            wanted = expect_head.strip().lower()
            found = find("hash", wanted)
            if not found:
                report.fail((report.last_seq or 0) + 1, "unexpected_head",
                            f"expected head {wanted[:16]}… is not in the chain (which ends at entry {report.last_seq} "
                            f"{(report.head or '')[:16]}…): the tail was truncated or rewritten")
        if report.ok:
            report.message = _ok_message(report)
        return self._record(report, actor, record)

    def _record(self, report: VerifyReport, actor: str, record: bool) -> VerifyReport:
        if record:
            with write_transaction(self.engine.db):
                append(actor, "audit.verify", "audit", {"ok": report.ok, "entries": report.entries,
                                                        "bad_seq": report.bad_seq, "problem": report.problem,
                                                        "keyed": report.keyed})
        return report

    # -- checkpoints ------------------------------------------------------------------------------

    @in_engine_db
    def checkpoint(self, reason: str) -> Checkpoint:
        """Seal the current head with the audit key (at unlock, before every backup).

        Raises VaultLocked without the master key. Returns the checkpoint,
        whose ``seq`` and ``head_hash`` a backup records.
        """
        sealer_key = self.engine.vault.active_audit_key()
        if sealer_key is None:
            raise VaultLocked("a sealed audit checkpoint needs the master key: the vault is locked")
        reason = str(reason)[:40]
        with write_transaction(self.engine.db):
            seq, head = lock_head(self.engine.db)
            seal = checkpoint_seal(sealer_key.material, seq, head, reason)
            AuditCheckpoint.create(seq=seq, head_hash=head, seal=seal, key_id=sealer_key.key_id, reason=reason)
        return Checkpoint(seq, head, sealer_key.key_id, reason)

    @in_engine_db
    def checkpoint_if_unsealed(self, reason: str) -> Checkpoint | None:
        """Seal the head if entries were appended while the vault was locked (at unlock).

        The unsealed tail is verified first: a broken chain is never sealed
        (a warning is logged instead, and `verify` reports the break).
        """
        db = self.engine.db
        row = db.execute_sql("SELECT seq, seal FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None or row[1] is not None:
            return None
        head_seq = int(row[0])
        last_cp = db.execute_sql("SELECT MAX(seq) FROM audit_checkpoint").fetchone()[0]
        if last_cp is not None and int(last_cp) >= head_seq:
            return None
        sealed = db.execute_sql("SELECT seq FROM audit_log WHERE seal IS NOT NULL ORDER BY seq DESC LIMIT 1").fetchone()
        start = max(int(sealed[0]) if sealed else 1, int(last_cp or 1), 1)
        report = self.verify(from_seq=start, record=False)
        if not report.ok:
            log.warning("audit head not sealed at %s: %s", reason, report.message)
            return None
        return self.checkpoint(reason)

    @in_engine_db
    def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint, oldest first."""
        return [{"seq": c.seq, "head_hash": c.head_hash, "key_id": c.key_id, "reason": c.reason,
                 "created_at": isoformat(c.created_at)}
                for c in AuditCheckpoint.select().order_by(AuditCheckpoint.id)]


def _ok_message(report: VerifyReport) -> str:
    text = f"ok: {report.entries} entries, head {report.head}"
    if report.keyed:
        if report.sealed_through is None:
            text += "; no entry is sealed yet"
        else:
            text += f"; sealed through entry {report.sealed_through}"
            after = (report.last_seq or 0) - report.sealed_through
            if after > 0:
                text += f" ({after} later entries chained only)"
    else:
        text += "; seals not checked (vault locked: give the master key to check them)"
    return text
