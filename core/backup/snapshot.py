"""Consistent snapshots of the database, and the checks run on a restored one.

SQLite: the online backup API (`sqlite3.Connection.backup`), never a raw copy
of a live file. It runs in one step under one read transaction, so the copy
is consistent while bots keep writing (WAL lets them).

PostgreSQL: ``pg_dump --format=custom`` streamed from its stdout, run on a
snapshot exported by a REPEATABLE READ transaction that also reads the audit
head, so the head recorded in the manifest is exactly the dump's. Connection
parameters (and any password) go to pg_dump/pg_restore through ``PG*``
environment variables, never argv.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tradeguard.errors import IntegrityError, TradeguardError

Progress = Callable[[int], None]


@dataclass(frozen=True)
class SnapshotInfo:
    """What was read inside the snapshot itself."""

    schema_version: int
    audit_seq: int | None
    audit_head: str | None


class PgToolMissing(TradeguardError):
    """pg_dump / pg_restore is missing or too old for the server."""


# -- SQLite --------------------------------------------------------------------------------


def sqlite_snapshot(source: Path, dest: Path) -> SnapshotInfo:
    """Copy the live database *source* into the new file *dest* (0600) with the online backup API."""
    fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(str(dest))
    try:
        dst.execute("PRAGMA journal_mode=OFF")  # a scratch file: durability comes from the target
        dst.execute("PRAGMA synchronous=OFF")
        src.backup(dst)  # pages=-1: one step, one read transaction, a consistent copy
        # A self-contained file: rollback-journal mode, so opening it never leaves -wal/-shm files beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    return sqlite_info(dest)


def sqlite_info(path: Path) -> SnapshotInfo:
    """Schema version and audit head read from the SQLite file at *path*."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _info(conn.cursor())
    finally:
        conn.close()


def _info(cur: Any) -> SnapshotInfo:
    def scalar_row(sql: str) -> Any:
        try:
            cur.execute(sql)
            return cur.fetchone()
        except Exception:
            return None

    version = scalar_row("SELECT MAX(version) FROM schema_version")
    head = scalar_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    return SnapshotInfo(int(version[0] or 0) if version else 0, int(head[0]) if head else None, head[1] if head else None)


def sqlite_integrity_check(path: Path) -> None:
    """``PRAGMA integrity_check`` on *path*; IntegrityError with SQLite's first complaint."""
    from tradeguard.storage.fields import decimal_collation

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.create_collation("DECIMAL", decimal_collation)  # indexes over money columns use it
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
    except sqlite3.DatabaseError as exc:
        raise IntegrityError(f"the restored SQLite database is unreadable: {exc}") from None
    finally:
        conn.close()
    if rows != ["ok"]:
        raise IntegrityError(f"the restored SQLite database fails integrity_check: {rows[0]}")


# -- PostgreSQL ----------------------------------------------------------------------------

_ENV_KEYS = {
    "host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS",
}


def pg_env(db: Any, database: str | None = None) -> dict[str, str]:
    """Environment for pg_dump/pg_restore/psql that connects like the peewee database *db*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in db.connect_params.items():
        if key in _ENV_KEYS and value is not None:
            env[_ENV_KEYS[key]] = str(value)
    env["PGDATABASE"] = database or db.database
    return env


def server_major(db: Any) -> int:
    """The PostgreSQL server's major version (e.g. 15)."""
    num = int(db.execute_sql("SHOW server_version_num").fetchone()[0])
    return num // 10000


def tool_major(path: str) -> int:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise PgToolMissing(f"cannot tell the version of {path}")
    return int(match.group(1))


def find_pg_tool(name: str, server: int) -> str:
    """Path of *name* (pg_dump, pg_restore) whose major version is >= the server's.

    Looks in ``$TRADEGUARD_PG_BIN``, ``$PATH`` and the usual per-version
    directories, preferring the server's own major version.
    """
    candidates: list[str] = []
    if os.environ.get("TRADEGUARD_PG_BIN"):
        candidates.append(os.path.join(os.environ["TRADEGUARD_PG_BIN"], name))
    found = shutil.which(name)
    if found:
        candidates.append(found)
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin",
                    "/usr/local/opt/postgresql@*/bin", "/Applications/Postgres.app/Contents/Versions/*/bin"):
        candidates.extend(os.path.join(d, name) for d in sorted(glob.glob(pattern)))
    versions: dict[str, int] = {}
    for path in candidates:
        if path not in versions and os.access(path, os.X_OK):
            try:
                versions[path] = tool_major(path)
            except (OSError, subprocess.SubprocessError, PgToolMissing):
                continue
    if not versions:
        raise PgToolMissing(
            f"{name} not found: install the PostgreSQL {server} client tools (e.g. postgresql-client-{server}) "
            "or set TRADEGUARD_PG_BIN to their directory"
        )
    usable = sorted((v, p) for p, v in versions.items() if v >= server)
    if not usable:
        best = max(versions.values())
        raise PgToolMissing(
            f"{name} {best} is older than the PostgreSQL server ({server}): install postgresql-client-{server} "
            "or set TRADEGUARD_PG_BIN"
        )
    exact = [p for v, p in usable if v == server]
    return exact[0] if exact else usable[0][1]


class PgDump:
    """A running ``pg_dump --format=custom`` on an exported snapshot; iterate for its bytes."""

    def __init__(self, db: Any, read_size: int = 1 << 20):
        import psycopg2

        self.db = db
        self.read_size = read_size
        pg_dump = find_pg_tool("pg_dump", server_major(db))
        self._conn = psycopg2.connect(dbname=db.database, **db.connect_params)
        cur = self._conn.cursor()
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute("SELECT pg_export_snapshot()")
        snapshot = cur.fetchone()[0]
        self.info = _info(cur)
        # The exporting transaction stays open until the dump ends: the snapshot lives as long as it.
        self.proc = subprocess.Popen(
            [pg_dump, "--format=custom", "--compress=0", f"--snapshot={snapshot}", "--no-password"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pg_env(db),
        )

    def __iter__(self) -> Iterator[bytes]:
        assert self.proc.stdout is not None
        try:
            while True:
                block = self.proc.stdout.read(self.read_size)
                if not block:
                    break
                yield block
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            if self.proc.wait() != 0:
                first = (err.strip().splitlines() or ["no message"])[0]
                raise TradeguardError(f"pg_dump failed: {first}")
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()
        try:
            self._conn.close()
        except Exception:
            pass


def pg_restore_list(db: Any, dump: Path) -> int:
    """``pg_restore --list`` on *dump*; the number of entries. IntegrityError if unreadable."""
    tool = find_pg_tool("pg_restore", server_major(db))
    done = subprocess.run([tool, "--list", str(dump)], capture_output=True, text=True, env=pg_env(db))
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise IntegrityError(f"pg_restore cannot read the dump: {first}")
    return sum(1 for line in done.stdout.splitlines() if line and not line.startswith(";"))


def pg_restore(db: Any, dump: Path, database: str) -> None:
    """Restore *dump* into the (empty) *database* on *db*'s server, in one transaction."""
    tool = find_pg_tool("pg_restore", server_major(db))
    done = subprocess.run(
        [tool, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--no-password",
         f"--dbname={database}", str(dump)],
        capture_output=True, text=True, env=pg_env(db, database),
    )
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise TradeguardError(f"pg_restore failed: {first}")
