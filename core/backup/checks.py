"""Checks run on a restored snapshot before it may replace anything.

SQLite: ``PRAGMA integrity_check``. PostgreSQL: ``pg_restore --list`` and a
restore into a scratch database. Both: the audit chain verifies and ends at
the head (sequence and hash) recorded in the manifest.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from tradeguard.backup.manifest import Manifest
from tradeguard.backup.snapshot import pg_restore, pg_restore_list, sqlite_integrity_check
from tradeguard.errors import IntegrityError, TradeguardError


def open_engine(url: str, home: Path, master_key: Any) -> Any:
    """An Engine on a restored database: no config file, no third-party plugins, no migration."""
    from tradeguard.config import load_settings
    from tradeguard.engine import Engine

    import inspect

    settings = load_settings(cli={"home": str(home), "database_url": url, "disable_plugins": True}, env={})
    options: dict[str, Any] = {"check_schema": False, "load_entrypoints": False}
    if "reconcile" in inspect.signature(Engine.open).parameters:
        options["reconcile"] = False  # a restored copy must never talk to a venue
    return Engine.open(settings=settings, master_key=master_key, **options)


def verify_audit(engine: Any, manifest: Manifest, master_key: Any) -> dict[str, Any]:
    """``audit verify`` on a restored database: the chain (and, with the master key, its
    seals) holds and still contains the head recorded at backup time, which is its last entry.
    Nothing is written to the restored database.
    """
    what = f"backup {manifest.backup_id}"
    if master_key is not None and engine.vault.initialised():
        engine.vault.unlock(master_key, actor="backup", checkpoint=False)
    report = engine.audit.verify(expect_head=manifest.audit_head, record=False)
    if not report.ok:
        raise IntegrityError(f"{what}: audit verify failed on the restored database: {report.message}")
    if (report.last_seq, report.head) != (manifest.audit_seq, manifest.audit_head):
        raise IntegrityError(
            f"{what}: the restored audit head (entry {report.last_seq}) is not the one recorded at backup time "
            f"(entry {manifest.audit_seq})"
        )
    return {"audit": "ok", "audit_seq": report.last_seq, "audit_head": report.head, "audit_seals_checked": report.keyed}


def check_sqlite(path: Path, manifest: Manifest, master_key: Any, home: Path) -> dict[str, Any]:
    """integrity_check and the audit check on a restored SQLite file."""
    sqlite_integrity_check(path)
    engine = open_engine(f"sqlite:///{path}", home, master_key)
    try:
        return {"integrity_check": "ok", **verify_audit(engine, manifest, master_key)}
    finally:
        engine.close()
        _self_contained(path)


def _self_contained(path: Path) -> None:
    """Fold any WAL back into *path* so the file alone is the whole database (it is moved next)."""
    import sqlite3

    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


def check_postgres(db: Any, dump: Path, manifest: Manifest, master_key: Any, home: Path) -> dict[str, Any]:
    """``pg_restore --list``, then a restore into a scratch database on *db*'s server and the audit check.

    Without a server (*db* None) or without the CREATEDB privilege only the
    listing runs; the result says so.
    """
    if db is None:
        raise TradeguardError("verifying a PostgreSQL backup needs a PostgreSQL server: open a PostgreSQL database (--db)")
    entries = pg_restore_list(db, dump)
    name = f"tg_verify_{secrets.token_hex(6)}"
    try:
        db.execute_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no CREATEDB privilege: say so, keep what was checked
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"pg_restore_list": entries, "scratch_restore": f"skipped: {first}"}
    try:
        pg_restore(db, dump, name)
        url = _url_for(db, name)
        engine = open_engine(url, home, master_key)
        try:
            audit = verify_audit(engine, manifest, master_key)
        finally:
            engine.close()
        return {"pg_restore_list": entries, "scratch_restore": "ok", **audit}
    except TradeguardError as exc:
        if isinstance(exc, IntegrityError):
            raise
        raise IntegrityError(f"backup {manifest.backup_id}: restoring into a scratch database failed: {exc}") from None
    finally:
        db.execute_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        db.execute_sql(f'DROP DATABASE IF EXISTS "{name}"')


def _url_for(db: Any, database: str) -> str:
    """A postgresql:// URL for *database* on *db*'s server (same user, password, options)."""
    from urllib.parse import quote, urlencode

    params = dict(db.connect_params)
    user = params.pop("user", None)
    password = params.pop("password", None)
    host = params.pop("host", "localhost")
    port = params.pop("port", 5432)
    auth = ""
    if user:
        auth = quote(str(user), safe="")
        if password:
            auth += ":" + quote(str(password), safe="")
        auth += "@"
    query = urlencode({k: v for k, v in params.items() if isinstance(v, (str, int))})
    return f"postgresql://{auth}{host}:{port}/{database}" + (f"?{query}" if query else "")
