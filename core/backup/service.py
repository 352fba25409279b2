"""``engine.backups``: create, list, verify, restore and prune backups of the installation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tradeguard import audit
from tradeguard.backup import pipeline, restore, retention
from tradeguard.backup.compress import read_blocks
from tradeguard.backup.keys import backup_key_for
from tradeguard.backup.manifest import data_name, manifest_name
from tradeguard.backup.snapshot import PgDump, sqlite_snapshot
from tradeguard.backup.stream import CHUNK_SIZE
from tradeguard.backup.targets import default_target_url, open_target
from tradeguard.clock import parse_iso, utcnow
from tradeguard.errors import IntegrityError, NotFound, ValidationError
from tradeguard.service import Service, in_engine_db
from tradeguard.storage import redact_url, sqlite_path

log = logging.getLogger("tradeguard.backup")
#: Temporary files of interrupted writes older than this are removed by prune.
PARTIAL_MAX_AGE = 3600.0
#: A runner lease with a heartbeat younger than this (seconds) blocks an in-place restore.
RUNNER_LEASE_FRESH = 60.0


class Backups(Service):
    """Encrypted, verified backups of this installation (see docs/backups.md)."""

    #: Plaintext bytes per encrypted chunk of new backups (tests use small chunks).
    chunk_size: int = CHUNK_SIZE

    # -- targets --------------------------------------------------------------------------

    def target_url(self, url: str | None = None) -> str:
        """*url*, else the configured ``backup_target``, else ``file://HOME/backups``."""
        return url or default_target_url(self.engine.settings)

    def target(self, url: str | None = None) -> Any:
        """The `BackupTarget` for *url* (default target when None)."""
        return open_target(self.engine.plugins, self.target_url(url))

    @property
    def master_key(self) -> Any:
        return getattr(self.engine, "_master_key", None)

    def _work_near(self) -> Path:
        path = sqlite_path(self.engine.url)
        return path.parent if path is not None else self.engine.settings.home_path

    # -- create ---------------------------------------------------------------------------

    def create(self, target: str | None = None, *, reason: str = "manual", progress: pipeline.Progress | None = None) -> dict[str, Any]:
        """Back up the database to *target*; returns the manifest summary.

        The snapshot is consistent while other connections keep writing. Needs
        the master key (VaultLocked otherwise). Safe to call from a bot runner:
        it never holds a write lock on the database.
        """
        self.engine._check_open()
        from tradeguard import __version__

        tgt = self.target(target)
        key = backup_key_for(self.engine)
        self._checkpoint_audit()
        backend = self.engine.backend
        if backend == "sqlite":
            db_path = sqlite_path(self.engine.url)
            if db_path is None:
                raise ValidationError("an in-memory database cannot be backed up")
            with pipeline.work_dir(db_path.parent) as work:
                snap = work / "snapshot.db"
                if progress:
                    progress("snapshot", 0, None)
                info = sqlite_snapshot(db_path, snap)
                with open(snap, "rb") as fh:
                    source = pipeline.Source(read_blocks(fh), info, "sqlite", snap.stat().st_size)
                    manifest = self._write(tgt, key, source, reason, __version__, progress)
        elif backend == "postgres":
            dump = PgDump(self.engine.db)
            try:
                manifest = self._write(tgt, key, pipeline.Source(dump, dump.info, "postgres"), reason, __version__, progress)
            finally:
                dump.close()
        else:
            raise ValidationError(f"backups of {backend} databases are not supported yet (SQLite and PostgreSQL are)")
        row = pipeline.manifest_row(manifest)
        self._record(tgt.url, manifest)
        self.engine.plugins.fire("on_backup_finished", backup={"id": manifest.backup_id, "target": tgt.url, "name": manifest.backup_id,
                                                             "size": manifest.data_size, "sha256": manifest.snapshot_sha256})
        return {**row, "target": tgt.url}

    def _write(self, tgt: Any, key: Any, source: pipeline.Source, reason: str, version: str, progress: Any) -> Any:
        return pipeline.write_backup(tgt, key, source, tradeguard_version=version, source_url=redact_url(self.engine.url),
                                     reason=reason, progress=progress, chunk_size=self.chunk_size)

    def _checkpoint_audit(self) -> None:
        checkpoint = getattr(getattr(self.engine, "audit", None), "checkpoint", None)
        if callable(checkpoint):
            checkpoint("backup")

    @in_engine_db
    def _record(self, target_url: str, manifest: Any) -> None:
        from tradeguard.storage.models import Backup

        with self.engine.db.atomic():
            Backup.create(target=target_url, name=manifest.backup_id, size=manifest.data_size, sha256=manifest.snapshot_sha256,
                          db_kind=manifest.db_kind, schema_version=manifest.schema_version, audit_head=manifest.audit_head,
                          audit_seq=manifest.audit_seq, status="created", created_at=parse_iso(manifest.created_at))
            audit.append("backup", "backup.create", f"backup:{manifest.backup_id}",
                         {"target": target_url, "size": manifest.data_size, "sha256": manifest.snapshot_sha256,
                          "reason": manifest.reason, "audit_seq": manifest.audit_seq})

    @in_engine_db
    def _set_status(self, target_url: str, backup_id: str, status: str, reason: str | None = None) -> None:
        """Record a backup's new status; a verification (ok or not) is also an audit entry."""
        from tradeguard.storage.models import Backup

        values: dict[str, Any] = {Backup.status: status}
        if status == "verified":
            values[Backup.verified_at] = utcnow()
        with self.engine.db.atomic():
            Backup.update(values).where((Backup.target == target_url) & (Backup.name == backup_id)).execute()
            if status in ("verified", "failed"):
                audit.append("backup", "backup.verify", f"backup:{backup_id}",
                             {"target": target_url, "ok": status == "verified", "reason": reason})

    # -- list -----------------------------------------------------------------------------

    def list(self, target: str | None = None) -> list[dict[str, Any]]:
        """Backups on *target* (read from the target), newest first, with what this database recorded."""
        tgt = self.target(target)
        rows = pipeline.list_backups(tgt, self.master_key)
        known = self._known(tgt.url)
        for row in rows:
            rec = known.get(row["id"])
            row["verified_at"] = rec["verified_at"] if rec else None
            row["recorded"] = rec is not None
        return rows

    @in_engine_db
    def _known(self, target_url: str) -> dict[str, dict[str, Any]]:
        from tradeguard.storage.models import Backup

        if not self.engine.db.table_exists(Backup._meta.table_name):
            return {}
        return {b.name: {"status": b.status, "verified_at": b.verified_at.isoformat() if b.verified_at else None}
                for b in Backup.select().where(Backup.target == target_url)}

    # -- verify and restore ----------------------------------------------------------------

    def verify(self, backup_id: str, target: str | None = None, *, progress: pipeline.Progress | None = None) -> dict[str, Any]:
        """Decrypt and check every chunk, the manifest, the hash, the restored database and its audit chain.

        Raises IntegrityError (exit 4) with the reason; the database is not touched
        except to record the outcome.
        """
        tgt = self.target(target)
        backup_id = pipeline.resolve_id(tgt, backup_id)
        with pipeline.work_dir(self._work_near()) as work:
            try:
                verified = restore.verify_into(tgt, backup_id, self.master_key, work, pg_db=self._pg_db(), progress=progress)
            except IntegrityError as exc:
                self._set_status(tgt.url, backup_id, "failed", str(exc))
                raise
        self._set_status(tgt.url, backup_id, "verified")
        return verified.report

    def _pg_db(self) -> Any:
        return self.engine.db if self.engine.backend == "postgres" else None

    def restore(self, backup_id: str, *, to: str | None = None, in_place: bool = False, target: str | None = None,
                progress: pipeline.Progress | None = None) -> dict[str, Any]:
        """Restore a backup after verifying it: into a new SQLite file / empty PostgreSQL
        database (*to*), or over this installation's database (*in_place*).

        In place, the current database is moved aside first and kept until the
        restored one passed its checks. Nothing changes if any check fails.
        """
        if bool(to) == bool(in_place):
            raise ValidationError("restore needs exactly one of --to PATH and --in-place")
        if to:
            return restore_to(self.target(target), backup_id, self.master_key, to, progress=progress,
                              work_near=self.engine.settings.home_path)
        tgt = self.target(target)
        backup_id = pipeline.resolve_id(tgt, backup_id)
        self._refuse_if_runners_active()
        with pipeline.work_dir(self._work_near()) as work:
            verified = restore.verify_into(tgt, backup_id, self.master_key, work, pg_db=self._pg_db(), progress=progress)
            kind = verified.opened.manifest.db_kind
            if kind != self.engine.backend:
                raise ValidationError(f"backup {backup_id} is of a {kind} database; this installation uses {self.engine.backend}")
            if kind == "sqlite":
                db_path = sqlite_path(self.engine.url)
                self.engine.db.close()
                restore.replace_sqlite(verified.path, db_path)
            else:
                restore.restore_postgres_into(self.engine.db, verified.path, verified, self.master_key, work)
        if self.master_key is not None:  # the restored database may hold other (older) vault keys
            self.engine.vault.lock()
            self.engine.vault.unlock(self.master_key, actor="backup", checkpoint=False)
        self._after_restore(tgt.url, verified.opened.manifest)
        return {**verified.report, "restored_to": redact_url(self.engine.url), "in_place": True}

    @in_engine_db
    def _refuse_if_runners_active(self) -> None:
        """An in-place restore under a running bot would lose its writes (or, on SQLite, write to a deleted file)."""
        from datetime import timedelta

        from tradeguard.storage.models import Account, RunnerLease

        if not self.engine.db.table_exists(RunnerLease._meta.table_name):
            return
        fresh = utcnow() - timedelta(seconds=RUNNER_LEASE_FRESH)
        held = [row.name for row in Account.select(Account.name).join(RunnerLease, on=(RunnerLease.account == Account.id))
                .where(RunnerLease.heartbeat_at > fresh)]
        if held:
            raise ValidationError(f"bot runner(s) are active on account(s) {', '.join(sorted(held))}: "
                                  "stop them before restoring in place (nothing changed)")

    @in_engine_db
    def _after_restore(self, target_url: str, manifest: Any) -> None:
        """In the restored database: the backup it came from is verified; the restore is audited."""
        from tradeguard.storage.models import Backup

        with self.engine.db.atomic():
            updated = Backup.update(status="verified", verified_at=utcnow()).where(
                (Backup.target == target_url) & (Backup.name == manifest.backup_id)).execute()
            if not updated:
                Backup.create(target=target_url, name=manifest.backup_id, size=manifest.data_size,
                              sha256=manifest.snapshot_sha256, db_kind=manifest.db_kind,
                              schema_version=manifest.schema_version, audit_head=manifest.audit_head,
                              audit_seq=manifest.audit_seq, status="verified", created_at=parse_iso(manifest.created_at),
                              verified_at=utcnow())
            audit.append("backup", "backup.restore", f"backup:{manifest.backup_id}", {"target": target_url, "in_place": True})

    # -- prune ----------------------------------------------------------------------------

    def prune(self, keep_last: int = 0, keep_daily: int = 0, keep_weekly: int = 0, *, dry_run: bool = False,
              target: str | None = None) -> dict[str, Any]:
        """Delete backups outside the retention policy (restic-style); never the newest verified one.

        Interrupted writes (data without a manifest, temporary files) older than
        an hour are removed too. Returns what was (or, with *dry_run*, would be) kept and removed.
        """
        tgt = self.target(target)
        rows = pipeline.list_backups(tgt)
        known = self._known(tgt.url)
        complete = [
            {"id": r["id"], "created": parse_iso(r["created_at"]), "verified": (known.get(r["id"]) or {}).get("status") == "verified"}
            for r in rows if r["status"] in ("complete", "ok") and r["created_at"]
        ]
        decided = retention.plan(complete, keep_last, keep_daily, keep_weekly)
        leftovers = [r["id"] for r in rows if r["status"] == "incomplete" and _age(r["id"]) > PARTIAL_MAX_AGE]
        if not dry_run:
            for backup_id in decided.remove:
                _delete(tgt, manifest_name(backup_id))  # manifest first: a half-deleted backup is never listed as complete
                _delete(tgt, data_name(backup_id))
                self._set_status(tgt.url, backup_id, "pruned")
            for backup_id in leftovers:
                _delete(tgt, data_name(backup_id))
            remove_partials = getattr(tgt, "remove_partials", None)
            if callable(remove_partials):
                remove_partials(PARTIAL_MAX_AGE)
            if decided.remove:
                self._audit_prune(tgt.url, decided.remove)
        return {"target": tgt.url, "dry_run": dry_run, "keep": [{"id": k, "reasons": v} for k, v in sorted(decided.keep.items(), reverse=True)],
                "remove": decided.remove, "incomplete_removed": leftovers}

    @in_engine_db
    def _audit_prune(self, target_url: str, removed: list[str]) -> None:
        with self.engine.db.atomic():
            audit.append("backup", "backup.prune", f"target:{target_url}", {"removed": removed})


def _delete(target: Any, name: str) -> None:
    try:
        target.delete(name)
    except NotFound:
        pass


def _age(backup_id: str) -> float:
    """Seconds since the time encoded in *backup_id*."""
    from datetime import datetime, timezone

    try:
        created = datetime.strptime(backup_id.split("-")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except (IndexError, ValueError):
        return 0.0
    return (utcnow() - created).total_seconds()


def restore_to(target: Any, backup_id: str, master_key: Any, to: str, *, pg_db: Any = None,
               progress: pipeline.Progress | None = None, work_near: Path | None = None) -> dict[str, Any]:
    """Restore a backup from *target* into *to* with only the master key: a new SQLite file
    (path or ``sqlite:///`` URL) or an empty PostgreSQL database (``postgresql://`` URL).

    Works when the installation's database is lost.
    """
    if to.startswith(("postgres://", "postgresql://")):
        from tradeguard.storage import connect

        db = connect(to)
        try:
            if not restore.postgres_is_empty(db):
                raise ValidationError(f"{redact_url(to)} is not empty: restore into an empty database (or use --in-place)")
            with pipeline.work_dir(work_near or Path.home() / ".tradeguard") as work:
                verified = restore.verify_into(target, backup_id, master_key, work, pg_db=db, progress=progress)
                if verified.opened.manifest.db_kind != "postgres":
                    raise ValidationError(f"backup {verified.opened.manifest.backup_id} is of a SQLite database: restore it --to a file path")
                restore.restore_postgres_into(db, verified.path, verified, master_key, work)
        finally:
            db.close()
        return {**verified.report, "restored_to": redact_url(to), "in_place": False}
    dest = sqlite_path(to) if to.startswith("sqlite:") else Path(to)
    if dest is None:
        raise ValidationError(f"cannot restore into {to!r}: give a file path or a postgresql:// URL")
    dest = dest.expanduser().absolute()
    if dest.exists():
        raise ValidationError(f"{dest} exists: restore refuses to overwrite a file (use --in-place for the current database)")
    with pipeline.work_dir(dest.parent) as work:
        verified = restore.verify_into(target, backup_id, master_key, work, pg_db=pg_db, progress=progress)
        if verified.opened.manifest.db_kind != "sqlite":
            raise ValidationError(f"backup {verified.opened.manifest.backup_id} is of a PostgreSQL database: restore it --to postgresql://HOST/EMPTY_DB")
        restore.install_sqlite(verified.path, dest)
    return {**verified.report, "restored_to": str(dest), "in_place": False}
