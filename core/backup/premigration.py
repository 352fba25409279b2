"""A backup before every migration that changes an existing database.

Encrypted to the configured backup target when the master key is available;
otherwise a plain snapshot beside the database (SQLite: ``DB.pre-migration-
vN-STAMP``; PostgreSQL: a ``pg_dump`` file in ``HOME/pre-migration/``), created
0600. Secrets inside a plain snapshot are still encrypted by the vault. If
neither can be written the migration does not run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tradeguard.backup.snapshot import PgDump, sqlite_snapshot
from tradeguard.clock import utcnow
from tradeguard.errors import TradeguardError
from tradeguard.storage import migrations, sqlite_path, use_database

log = logging.getLogger("tradeguard.backup")


def backup_before_migration(engine: Any, target: int | None = None) -> dict[str, Any] | None:
    """Back up *engine*'s database if migrating it to *target* (default: newest) changes it.

    Returns ``{"kind": "encrypted"|"snapshot", "where": …, "from": N, "to": M}``,
    or None for a new (empty) or up-to-date database.
    """
    with use_database(engine.db):
        current = migrations.current(engine.db)
    goal = migrations.head() if target is None else target
    if current == 0 or goal <= current or goal > migrations.head():
        return None
    result: dict[str, Any] = {"from": current, "to": goal}
    if getattr(engine, "_master_key", None) is not None:
        try:
            if engine.vault.locked:
                engine.vault.unlock(engine._master_key, actor="migration", checkpoint=False)
            made = engine.backups.create(reason=f"pre-migration v{current}->v{goal}")
            where = f"{made['target'].rstrip('/')}/{made['id']}"
            log.warning("backed up the database before migrating it: %s", where)
            return {**result, "kind": "encrypted", "id": made["id"], "where": where}
        except TradeguardError as exc:
            log.warning("encrypted pre-migration backup failed (%s); taking a local snapshot instead", exc)
    path = local_snapshot(engine, current)
    log.warning("backed up the database before migrating it: %s (unencrypted snapshot, mode 0600)", path)
    return {**result, "kind": "snapshot", "where": str(path)}


def local_snapshot(engine: Any, version: int) -> Path:
    """A plain 0600 snapshot of the database beside it; its path."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    db_path = sqlite_path(engine.url)
    if db_path is not None:
        dest = db_path.with_name(f"{db_path.name}.pre-migration-v{version}-{stamp}")
        sqlite_snapshot(db_path, dest)
        return dest
    if engine.backend != "postgres":
        raise TradeguardError(f"cannot snapshot a {engine.backend} database before migrating it: back it up yourself first")
    folder = engine.settings.home_path / "pre-migration"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest = folder / f"{engine.db.database}-v{version}-{stamp}.dump"
    dump = PgDump(engine.db)
    fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in dump:
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        dump.close()
    return dest
