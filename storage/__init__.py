"""Database setup: one peewee model layer for SQLite, PostgreSQL and MySQL.

Models bind to `database`, a proxy that resolves to the database of the
*current context* (a `contextvars.ContextVar`), so several Engines in one
process — each with its own database — never share a connection: an Engine
activates its database around every call with `use_database`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlparse, unquote

import peewee
from playhouse.shortcuts import ReconnectMixin

from tradeguard.errors import ConfigError, DatabaseUnavailable
from tradeguard.storage.fields import FIELD_TYPES, backend_of, decimal_collation

_current: contextvars.ContextVar[peewee.Database | None] = contextvars.ContextVar("tradeguard_db", default=None)
# Databases of open Engines, newest last: the target outside any `use_database`
# block (lazy relation access on a returned row, a new thread). With several
# Engines open, go through Engine methods, which always say which database.
_open_databases: list[peewee.Database] = []


class ContextDatabaseProxy(peewee.DatabaseProxy):
    """A DatabaseProxy whose target is per context (thread / asyncio task)."""

    __slots__ = ()

    @property  # type: ignore[override]
    def obj(self) -> peewee.Database | None:
        current = _current.get()
        if current is None and _open_databases:
            return _open_databases[-1]
        return current

    def __setattr__(self, attr: str, value: object) -> None:
        if attr == "obj":
            _current.set(value)  # type: ignore[arg-type]
        else:
            object.__setattr__(self, attr, value)


database = ContextDatabaseProxy()


@contextlib.contextmanager
def write_transaction(db: peewee.Database) -> Iterator[None]:
    """A write transaction: SQLite takes its write lock at BEGIN (``BEGIN IMMEDIATE``), so
    concurrent writers wait (busy timeout) instead of failing with "database is locked" or
    two checks interleaving; a normal transaction elsewhere, a savepoint inside one."""
    if backend_of(db) == "sqlite" and not db.in_transaction():
        with db.atomic(lock_type="IMMEDIATE"):
            yield
    else:
        with db.atomic():
            yield


def current_database() -> peewee.Database | None:
    """The database `use_database` points the models at in this context (None outside any block)."""
    return _current.get()


@contextlib.contextmanager
def use_database(db: peewee.Database) -> Iterator[peewee.Database]:
    """Make *db* the target of every model query inside the block."""
    token = _current.set(db)
    try:
        yield db
    finally:
        _current.reset(token)


def register_open(db: peewee.Database) -> None:
    """Record *db* as open (the fallback target outside `use_database`)."""
    _open_databases.append(db)


def unregister_open(db: peewee.Database) -> None:
    """Forget *db* (its Engine closed)."""
    for index in range(len(_open_databases) - 1, -1, -1):
        if _open_databases[index] is db:
            del _open_databases[index]
            break


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


# -- connecting -----------------------------------------------------------------

_QUERY_LOG = logging.getLogger("peewee")
_EXCEPTION_WRAPPER = getattr(peewee, "__exception_wrapper__")


class SqliteDatabase(peewee.SqliteDatabase):
    """SQLite with WAL, a busy timeout, foreign keys, synchronous=FULL and the DECIMAL collation."""

    def _add_conn_hooks(self, conn: Any) -> None:
        super()._add_conn_hooks(conn)
        conn.create_collation("DECIMAL", decimal_collation)

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        """peewee's ``execute_sql`` without its per-statement layers while nothing observes the statements
        (no DEBUG log of ``peewee``, no query hooks): the order path runs some forty statements per order."""
        if self.query_hooks or _QUERY_LOG.isEnabledFor(logging.DEBUG) or self.is_closed():
            return super().execute_sql(sql, params)
        with _EXCEPTION_WRAPPER:  # sqlite3 errors become peewee's (IntegrityError …), as in peewee
            cursor = self._state.conn.cursor()
            cursor.execute(sql, params or ())
        return cursor


class PostgresqlDatabase(ReconnectMixin, peewee.PostgresqlDatabase):
    """PostgreSQL that reconnects once after a dropped connection (server restart,
    ``pg_terminate_backend``, idle timeout): on a statement outside a transaction
    and at a transaction's BEGIN, where nothing can be lost. Inside a transaction
    the error propagates (the transaction is rolled back)."""

    # ReconnectMixin's defaults are MySQL error codes; these are psycopg2's messages.
    reconnect_errors = (
        (peewee.OperationalError, "terminating connection"),
        (peewee.OperationalError, "server closed the connection"),
        (peewee.OperationalError, "connection already closed"),
        (peewee.InterfaceError, "connection already closed"),
    )

    def begin(self, *args: Any, **kwargs: Any) -> None:
        self._reconnect(super().begin, *args, **kwargs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every thread has its own connection; remember them all so the Engine
        # can close them on exit, not only the closing thread's.
        self._all_connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._all_connections_lock = threading.Lock()

    def _connect(self) -> Any:
        conn = super()._connect()
        with self._all_connections_lock:
            self._all_connections.add(conn)
        return conn

    def close_all_threads(self) -> None:
        """Close this thread's connection and every other thread's (the Engine is closing)."""
        try:
            self.close()
        except peewee.OperationalError:
            pass
        with self._all_connections_lock:
            connections = list(self._all_connections)
        for conn in connections:
            try:
                conn.close()
            except Exception:  # already closed or broken: nothing to release
                pass


class MySQLDatabase(ReconnectMixin, peewee.MySQLDatabase):
    """MySQL / MariaDB (optional; install tradeguard[mysql])."""


SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30000,
    "foreign_keys": 1,
    # An order intent must survive a power cut: fsync the WAL at every commit.
    "synchronous": "full",
}


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL (None for other URLs or :memory:)."""
    if not url.startswith("sqlite:"):
        return None
    path = url[len("sqlite://") :] if url.startswith("sqlite://") else url[len("sqlite:") :]
    if path.startswith("/") and url.startswith("sqlite:///"):
        path = path[1:] if path.startswith("//") else path
    if path in ("", ":memory:", "/:memory:"):
        return None
    return Path(path)


def _create_private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def connect(url: str) -> peewee.Database:
    """Open the database at *url* and check that it answers.

    ``sqlite:///path/to/file.db`` (created 0600 if missing), ``postgresql://
    user@host:port/dbname?sslmode=require`` or ``mysql://…``. A malformed URL
    raises ConfigError (exit 2); an unreachable server DatabaseUnavailable
    (exit 1) naming the host.
    """
    url = url.strip()
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        path = sqlite_path(url)
        if path is None:
            db = SqliteDatabase(":memory:", pragmas=SQLITE_PRAGMAS, field_types=FIELD_TYPES["sqlite"])
        else:
            try:
                _create_private_file(path)
            except OSError as exc:
                raise DatabaseUnavailable(f"cannot create database file {path}: {exc.strerror}") from None
            db = SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, field_types=FIELD_TYPES["sqlite"])
    elif scheme in ("postgres", "postgresql"):
        db = PostgresqlDatabase(**_server_params(url, parsed, 5432), field_types=FIELD_TYPES["postgres"])
    elif scheme in ("mysql", "mariadb"):
        db = MySQLDatabase(**_server_params(url, parsed, 3306), field_types=FIELD_TYPES["mysql"])
    else:
        raise ConfigError(
            f"unsupported database URL {redact_url(url)!r}: use sqlite:///PATH, postgresql://HOST/DB or mysql://HOST/DB"
        )
    try:
        db.connect(reuse_if_open=True)
        db.execute_sql("SELECT 1")
    except ImportError as exc:
        raise ConfigError(f"{scheme} support is not installed ({exc.name}): pip install 'tradeguard[{scheme}]'") from None
    except peewee.DatabaseError as exc:
        where = f"{parsed.hostname}:{parsed.port or ''}".rstrip(":") if parsed.hostname else str(sqlite_path(url))
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot reach the database at {where}: {first}") from None
    return db


def _server_params(url: str, parsed: Any, default_port: int) -> dict[str, Any]:
    try:
        port = parsed.port or default_port
    except ValueError:
        raise ConfigError(f"malformed database URL {redact_url(url)!r}: bad port") from None
    name = unquote(parsed.path.lstrip("/"))
    if not parsed.hostname or not name or "/" in name:
        raise ConfigError(f"malformed database URL {redact_url(url)!r}: expected SCHEME://[USER@]HOST[:PORT]/DATABASE")
    params: dict[str, Any] = {"database": name, "host": parsed.hostname, "port": port}
    if parsed.username:
        params["user"] = unquote(parsed.username)
    if parsed.password:
        params["password"] = unquote(parsed.password)
    for key, value in parse_qsl(parsed.query):
        params[key] = value  # sslmode, sslrootcert, connect_timeout, options …
    params.setdefault("connect_timeout", 10)
    return params


def redact_url(url: str) -> str:
    """*url* with any password replaced by ``***`` (for messages and logs)."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return url


__all__ = [
    "BaseModel",
    "ContextDatabaseProxy",
    "backend_of",
    "current_database",
    "connect",
    "database",
    "redact_url",
    "sqlite_path",
    "use_database",
]
