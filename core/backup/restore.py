"""Verify a backup end to end, and put a verified snapshot in place.

Nothing here needs the installation's database: a target and the master key
material are enough (the database may be lost). A snapshot replaces a
database only after every check passed; in place, the current database is
moved aside first and put back if anything fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradeguard.backup.checks import check_postgres, check_sqlite, open_engine, verify_audit
from tradeguard.backup.pipeline import Opened, Progress, extract, manifest_row, open_backup, resolve_id
from tradeguard.backup.snapshot import pg_restore, sqlite_integrity_check
from tradeguard.clock import utcnow
from tradeguard.errors import IntegrityError, ValidationError

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Verified:
    """A backup that passed every check, its snapshot extracted at ``path``."""

    opened: Opened
    path: Path
    report: dict[str, Any]


def verify_into(target: Any, backup_id: str, master_key: Any, work: Path, *, pg_db: Any = None,
                progress: Progress | None = None) -> Verified:
    """Authenticate, decrypt and check backup *backup_id* into the scratch directory *work*.

    IntegrityError (exit 4) names the first failure; WrongMasterKey when the key does not open it.
    """
    backup_id = resolve_id(target, backup_id)
    opened = open_backup(target, backup_id, master_key)
    path = work / ("snapshot.db" if opened.manifest.db_kind == "sqlite" else "snapshot.dump")
    extract(target, opened, path, progress)
    if opened.manifest.db_kind == "sqlite":
        checks = check_sqlite(path, opened.manifest, master_key, work)
    elif opened.manifest.db_kind == "postgres":
        checks = check_postgres(pg_db, path, opened.manifest, master_key, work)
    else:
        raise IntegrityError(f"backup {backup_id}: unknown database kind {opened.manifest.db_kind!r}")
    report = {**manifest_row(opened.manifest), "target": target.url, "chunks": opened.manifest.chunks,
              "checks": {"chunks": "ok", "manifest": "ok", "sha256": "ok", **checks}}
    return Verified(opened, path, report)


def install_sqlite(snapshot: Path, dest: Path) -> None:
    """Move the verified SQLite *snapshot* to the new path *dest* (same filesystem), 0600."""
    if dest.exists():
        raise ValidationError(f"{dest} exists: restore refuses to overwrite a file (use --in-place for the current database)")
    os.chmod(snapshot, 0o600)
    os.replace(snapshot, dest)
    _sync_dir(dest.parent)


def replace_sqlite(snapshot: Path, db_path: Path) -> Path:
    """Swap the verified *snapshot* in for the database at *db_path* (its connections closed).

    The current file and its -wal/-shm are moved aside first and moved back if
    anything fails; they are deleted once the restored file opens cleanly.
    Returns where the old database was kept during the swap.
    """
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    aside = db_path.with_name(f"{db_path.name}.pre-restore-{stamp}")
    moved: list[str] = []
    for suffix in ("",) + SQLITE_SIDE_FILES:
        current = Path(f"{db_path}{suffix}")
        if current.exists():
            os.replace(current, Path(f"{aside}{suffix}"))
            moved.append(suffix)
    try:
        os.chmod(snapshot, 0o600)
        os.replace(snapshot, db_path)
        _sync_dir(db_path.parent)
        sqlite_integrity_check(db_path)
    except BaseException:
        for suffix in ("",) + SQLITE_SIDE_FILES:
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        for suffix in moved:
            os.replace(Path(f"{aside}{suffix}"), Path(f"{db_path}{suffix}"))
        raise
    for suffix in moved:
        Path(f"{aside}{suffix}").unlink(missing_ok=True)
    return aside


def restore_postgres_into(db: Any, dump: Path, verified: Verified, master_key: Any, work: Path) -> None:
    """Restore a verified dump into *db*'s database (empty for ``--to``, current for ``--in-place``).

    The current ``public`` schema is renamed aside first and renamed back if
    the restore or its audit check fails; it is dropped once they succeed.
    """
    aside = f"tg_pre_restore_{utcnow().strftime('%Y%m%d%H%M%S')}"
    db.execute_sql(f'ALTER SCHEMA public RENAME TO "{aside}"')
    db.execute_sql("CREATE SCHEMA public")
    try:
        pg_restore(db, dump, db.database)
        from tradeguard.backup.checks import _url_for

        engine = open_engine(_url_for(db, db.database), work, master_key)
        try:
            verify_audit(engine, verified.opened.manifest, master_key)
        finally:
            engine.close()
    except BaseException:
        db.execute_sql("DROP SCHEMA public CASCADE")
        db.execute_sql(f'ALTER SCHEMA "{aside}" RENAME TO public')
        raise
    db.execute_sql(f'DROP SCHEMA "{aside}" CASCADE')


def postgres_is_empty(db: Any) -> bool:
    """True when the database has no tables in its public schema."""
    cur = db.execute_sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
    return int(cur.fetchone()[0]) == 0


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
