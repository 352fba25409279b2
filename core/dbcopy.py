"""Copy a whole installation to another database (``tradeguard db copy --to URL``).

Every table of `ALL_MODELS` — settings, the vault's wrapped keys, accounts,
orders, the audit log with its seals and checkpoints … — is read from ONE
consistent snapshot of the source (SQLite: a read transaction; PostgreSQL: a
``REPEATABLE READ`` read-only transaction) and written to the target with its
ids, exact Decimals, timestamps and audit hashes. JSON and audit columns are
copied as the exact text the source holds.

The target is written in two steps:

1. one transaction creates the schema (after dropping tradeguard's tables if
   the target was empty or ``replace`` was confirmed) and writes the setting
   ``copy_in_progress``;
2. one transaction copies every row, moves PostgreSQL sequences past the
   copied ids, compares a digest of every table with the source's, and
   removes ``copy_in_progress``.

A copy killed in step 2 rolls back to an empty schema still marked
``copy_in_progress``: `Engine.open` refuses such a database with a clear
message, and running the copy again replaces it (no ``--force`` needed).
The source is only read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import peewee as pw

from tradeguard.clock import isoformat, utcnow
from tradeguard.errors import IntegrityError, TradeguardError, ValidationError
from tradeguard.money import plain
from tradeguard.storage import backend_of, connect, redact_url, sqlite_path, use_database
from tradeguard.storage import migrations
from tradeguard.storage.fields import JSONField
from tradeguard.storage.models import ALL_MODELS, RunnerLease, SchemaVersion, Setting

_ZERO = timedelta(0)
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: The setting that marks a target whose copy has not finished.
MARKER = "copy_in_progress"
#: Rows read and written per statement.
BATCH = 500
#: Test hook: after the first batch of this table, say so on stderr and wait to be killed.
PAUSE_ENV = "TRADEGUARD_DBCOPY_TEST_PAUSE_AFTER"
#: Settings an installation created by ``tradeguard init`` holds; such a target counts as empty.
_INIT_SETTINGS = {"profile", MARKER}


class IncompleteCopy(TradeguardError):
    """The database holds a copy that did not finish; it must not be used."""


class CopyFailed(TradeguardError):
    """The target refused a row; its copy transaction was rolled back."""


@dataclass
class TargetState:
    """What the target database holds before a copy."""

    url: str
    backend: str
    rows: dict[str, int] = field(default_factory=dict)
    foreign_tables: list[str] = field(default_factory=list)
    incomplete: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        """True when a copy may write here without ``--force``."""
        return not self.foreign_tables and not self.rows


@dataclass
class CopyResult:
    """What a finished copy wrote."""

    source: str
    target: str
    source_backend: str
    target_backend: str
    schema_version: int
    tables: dict[str, int]
    digests: dict[str, str]
    audit_head: dict[str, Any] | None
    replaced: bool
    seconds: float
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "source_backend": self.source_backend,
            "target_backend": self.target_backend,
            "schema_version": self.schema_version,
            "tables": self.tables,
            "rows": sum(self.tables.values()),
            "audit_head": self.audit_head,
            "replaced": self.replaced,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


# -- the marker -------------------------------------------------------------------------


def incomplete_copy(db: pw.Database) -> dict[str, Any] | None:
    """The ``copy_in_progress`` marker of *db* (None when absent or no schema)."""
    with use_database(db):
        if not db.table_exists(Setting._meta.table_name):
            return None
        row = Setting.get_or_none(Setting.key == MARKER)
        return None if row is None else dict(row.value or {})


def refuse_incomplete_copy(db: pw.Database) -> None:
    """Raise IncompleteCopy if *db* is marked as an unfinished copy (called by `Engine.open`)."""
    marker = incomplete_copy(db)
    if marker is not None:
        raise IncompleteCopy(
            f"this database holds an incomplete copy (from {marker.get('source', '?')}, started "
            f"{marker.get('started_at', '?')}): run `tradeguard db copy --to URL` again from the source, "
            "or use the source"
        )


# -- inspecting the target --------------------------------------------------------------


def _known_tables() -> dict[str, type[pw.Model]]:
    return {model._meta.table_name: model for model in ALL_MODELS}


def _existing_tables(db: pw.Database) -> list[str]:
    tables = db.get_tables()
    if backend_of(db) == "sqlite":
        tables = [t for t in tables if not t.startswith("sqlite_")]
    return tables


def inspect_target(db: pw.Database, url: str) -> TargetState:
    """What *db* holds: row counts of tradeguard tables (ignoring the schema version
    and the settings a bare ``tradeguard init`` writes) and any foreign tables."""
    state = TargetState(url=redact_url(url), backend=backend_of(db))
    known = _known_tables()
    with use_database(db):
        for table in _existing_tables(db):
            model = known.get(table)
            if model is None:
                state.foreign_tables.append(table)
            elif model is SchemaVersion:
                continue
            elif model is Setting:
                count = Setting.select().where(Setting.key.not_in(list(_INIT_SETTINGS))).count()
                if count:
                    state.rows[table] = count
            else:
                count = model.select().count()
                if count:
                    state.rows[table] = count
        state.incomplete = incomplete_copy(db)
    return state


def same_database(a: str, b: str) -> bool:
    """True when two URLs name the same database (same SQLite file, or same server and name)."""
    path_a, path_b = sqlite_path(a), sqlite_path(b)
    if path_a is not None or path_b is not None:
        if path_a is None or path_b is None:
            return False
        return Path(path_a).expanduser().resolve() == Path(path_b).expanduser().resolve()
    pa, pb = urlparse(a), urlparse(b)
    scheme = lambda p: {"postgres": "postgresql"}.get(p.scheme.split("+")[0], p.scheme.split("+")[0])  # noqa: E731
    return (
        scheme(pa) == scheme(pb)
        and (pa.hostname or "") == (pb.hostname or "")
        and (pa.port or 0) == (pb.port or 0)
        and pa.path.strip("/") == pb.path.strip("/")
    )


# -- snapshot and rows ------------------------------------------------------------------


@contextlib.contextmanager
def snapshot(db: pw.Database) -> Iterator[None]:
    """One consistent, read-only view of *db* for the duration of the block."""
    if backend_of(db) == "postgres":
        with db.atomic(isolation_level="REPEATABLE READ"):
            db.execute_sql("SET TRANSACTION READ ONLY")
            yield
    elif backend_of(db) == "mysql":
        # InnoDB's default REPEATABLE READ: the snapshot is taken at the first read (untested backend).
        with db.atomic():
            yield
    else:
        # SQLite in WAL mode: a (deferred, so writers are not blocked) read
        # transaction sees the database as of its first read.
        with db.atomic(lock_type="DEFERRED"):
            yield


def _fields(model: type[pw.Model]) -> list[pw.Field]:
    return list(model._meta.sorted_fields)


def _raw_batches(db: pw.Database, model: type[pw.Model], where: Any = None) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of *model* as the driver returns them (no conversion), by primary key, in batches."""
    fields = _fields(model)
    pk = model._meta.primary_key
    index = fields.index(pk)
    last: Any = None
    while True:
        query = model.select(*fields).order_by(pk).limit(BATCH)
        if where is not None:
            query = query.where(where)
        if last is not None:
            query = query.where(pk > last)
        sql, params = query.sql()
        rows = list(db.execute_sql(sql, params).fetchall())
        if not rows:
            return
        yield rows
        if len(rows) < BATCH:
            return
        last = pk.python_value(rows[-1][index])


def _to_python(model: type[pw.Model], raw: tuple[Any, ...]) -> list[Any]:
    """Driver values -> Python values; JSON columns stay the exact text stored."""
    out = []
    for fld, value in zip(_fields(model), raw):
        if value is None or isinstance(fld, JSONField):
            out.append(value)
        else:
            out.append(fld.python_value(value))
    return out


def _canonical(value: Any) -> Any:
    """A backend-independent JSON-able form of one Python value (for the table digests)."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is Decimal:
        return plain(value)
    if isinstance(value, datetime):
        return (value if value.utcoffset() == _ZERO else value.astimezone(timezone.utc)).isoformat()
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _row_bytes(values: list[Any]) -> bytes:
    """One row's canonical bytes: a JSON array (unambiguous, and encoded in C)."""
    return _json_encode([_canonical(v) for v in values]).encode("utf-8") + b"\n"


def table_digest(db: pw.Database, model: type[pw.Model]) -> tuple[int, str]:
    """(rows, sha256) of a table's content in primary-key order, the same on every backend."""
    digest = hashlib.sha256()
    count = 0
    # A target in the middle of a copy holds the marker, which the source never has.
    where = (Setting.key != MARKER) if model is Setting else None
    with use_database(db):
        for batch in _raw_batches(db, model, where):
            for raw in batch:
                digest.update(_row_bytes(_to_python(model, raw)))
                count += 1
    return count, digest.hexdigest()


def _db_values(fields: list[pw.Field], values: list[Any]) -> tuple[Any, ...]:
    """Python values -> the target's driver values (call with the target active); JSON stays as stored."""
    return tuple(v if v is None or isinstance(f, JSONField) else f.db_value(v) for f, v in zip(fields, values))


def _insert_rows(target: pw.Database, model: type[pw.Model], fields: list[pw.Field], rows: list[tuple]) -> None:
    """One multi-row INSERT through the driver (peewee's query builder costs more than the database here)."""
    quote = "`" if backend_of(target) == "mysql" else '"'
    columns = ", ".join(f"{quote}{f.column_name}{quote}" for f in fields)
    sql = f"INSERT INTO {quote}{model._meta.table_name}{quote} ({columns}) VALUES "
    with pw.__exception_wrapper__:  # driver errors -> peewee's (IntegrityError, OperationalError …)
        cursor = target.cursor()
        if backend_of(target) == "postgres":
            from psycopg2.extras import execute_values

            execute_values(cursor, sql + "%s", rows, page_size=len(rows))
        else:
            cursor.executemany(sql + "(" + ", ".join([target.param] * len(fields)) + ")", rows)


def _self_references(model: type[pw.Model]) -> list[pw.ForeignKeyField]:
    return [f for f in _fields(model) if isinstance(f, pw.ForeignKeyField) and f.rel_model is model]


def _pause_for_tests(table: str) -> None:
    if os.environ.get(PAUSE_ENV) == table:
        print(f"dbcopy: paused after the first batch of {table}", file=sys.stderr, flush=True)
        time.sleep(600)


def _copy_table(source: pw.Database, target: pw.Database, model: type[pw.Model]) -> tuple[int, str]:
    """Copy every row of *model*; returns (rows, digest of the source rows)."""
    fields = _fields(model)
    position = {f.name: i for i, f in enumerate(fields)}  # (Field == Field builds an expression)
    self_refs = _self_references(model)
    pk_index = position[model._meta.primary_key.name]
    later: list[tuple[Any, dict[str, Any]]] = []
    digest = hashlib.sha256()
    count = 0
    with use_database(source):
        batches = _raw_batches(source, model)
    while True:
        with use_database(source):
            batch = next(batches, None)
        if batch is None:
            break
        rows = []
        for raw in batch:
            values = _to_python(model, raw)
            digest.update(_row_bytes(values))
            # A row may point at a later row of its own table (orders' parent): link it afterwards.
            links = {f.name: values[position[f.name]] for f in self_refs if values[position[f.name]] is not None}
            if links:
                later.append((values[pk_index], links))
                for name in links:
                    values[position[name]] = None
            rows.append(values)
        with use_database(target):
            _insert_rows(target, model, fields, [_db_values(fields, values) for values in rows])
        count += len(rows)
        _pause_for_tests(model._meta.table_name)
    with use_database(target):
        for key, links in later:
            model.update(**links).where(model._meta.primary_key == key).execute()
    return count, digest.hexdigest()


def _fix_sequences(target: pw.Database) -> None:
    """PostgreSQL: move each id sequence past the highest copied id."""
    if backend_of(target) != "postgres":
        return
    for model in ALL_MODELS:
        pk = model._meta.primary_key
        if not isinstance(pk, pw.AutoField):
            continue
        table, column = model._meta.table_name, pk.column_name
        target.execute_sql(
            f'SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)',
            (f'"{table}"', column),
        )


def _audit_head(db: pw.Database) -> dict[str, Any] | None:
    from tradeguard.storage.models import AuditLog

    with use_database(db):
        row = AuditLog.select(AuditLog.seq, AuditLog.hash).order_by(AuditLog.seq.desc()).first()
    return None if row is None else {"seq": row.seq, "hash": row.hash}


def _running_bots(db: pw.Database) -> list[str]:
    with use_database(db):
        return [f"{lease.account_id}:{lease.owner}" for lease in RunnerLease.select()]


# -- the copy ---------------------------------------------------------------------------


def copy_installation(
    source: pw.Database,
    source_url: str,
    target_url: str,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyResult:
    """Copy the installation in *source* to the (empty) database at *target_url*.

    :param replace: drop whatever tradeguard tables the target holds (the
        CLI's ``--force``, after a confirmation). Foreign tables always refuse.
    :param progress: called with (table, rows) after each table.
    :raises ValidationError: same database, target not empty, source not migrated.
    :raises IntegrityError: a table's content differs after the copy (nothing committed).
    """
    if same_database(source_url, target_url):
        raise ValidationError("the target is the source database: copy to another database")
    started = time.monotonic()
    head = migrations.head()
    with use_database(source):
        version = migrations.current(source)
    if version != head:
        raise ValidationError(
            f"the source is at schema version {version}, this tradeguard copies version {head}: run `tradeguard db migrate` first"
        )
    target = connect(target_url)
    try:
        state = inspect_target(target, target_url)
        if state.foreign_tables:
            raise ValidationError(
                f"the target {state.url} holds tables that are not tradeguard's "
                f"({', '.join(sorted(state.foreign_tables)[:5])}): copy into a dedicated database"
            )
        if not state.empty and not replace:
            raise ValidationError(f"the target {state.url} is not empty ({_describe_rows(state.rows)}): "
                                  "use --force to replace it")
        warnings = []
        bots = _running_bots(source)
        if bots:
            warnings.append(f"{len(bots)} runner lease(s) held on the source: writes after the snapshot are not in the copy")
        marker = {"source": redact_url(source_url), "started_at": isoformat(utcnow()), "pid": os.getpid()}
        try:
            _prepare_target(target, marker)
        except pw.DatabaseError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CopyFailed(f"preparing the target {state.url} failed: {first}; nothing was changed "
                             "(the copy creates tables: connect as the database owner)") from exc
        tables: dict[str, int] = {}
        digests: dict[str, str] = {}
        with snapshot(source), use_database(target), target.atomic():
            for model in ALL_MODELS:
                name = model._meta.table_name
                if model is SchemaVersion:
                    SchemaVersion.delete().execute()  # the migrations' own rows: take the source's history
                try:
                    tables[name], digests[name] = _copy_table(source, target, model)
                except pw.DatabaseError as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise CopyFailed(f"copying table {name} failed: {first}; nothing was copied "
                                     f"(the target is marked incomplete: run the copy again)") from exc
                if progress is not None:
                    progress(name, tables[name])
            audit_head = _audit_head(source)
            _fix_sequences(target)
            _check_copy(target, tables, digests)
            Setting.delete().where(Setting.key == MARKER).execute()
        return CopyResult(
            source=redact_url(source_url),
            target=state.url,
            source_backend=backend_of(source),
            target_backend=backend_of(target),
            schema_version=version,
            tables=tables,
            digests=digests,
            audit_head=audit_head,
            replaced=not state.empty,
            seconds=time.monotonic() - started,
            warnings=warnings,
        )
    finally:
        target.close()


def _describe_rows(rows: dict[str, int]) -> str:
    parts = [f"{table}: {count}" for table, count in sorted(rows.items(), key=lambda kv: -kv[1])]
    return ", ".join(parts[:4]) + (", …" if len(parts) > 4 else "")


def _prepare_target(target: pw.Database, marker: dict[str, Any]) -> None:
    """Step 1: a fresh schema at head and the ``copy_in_progress`` marker, in one transaction."""
    with use_database(target), target.atomic():
        existing = set(_existing_tables(target))
        models = [m for m in ALL_MODELS if m._meta.table_name in existing]
        if models:
            target.drop_tables(models, safe=True, cascade=backend_of(target) == "postgres")
        migrations.upgrade(target)
        Setting.insert(key=MARKER, value=marker, updated_at=utcnow()).execute()


def _check_copy(target: pw.Database, tables: dict[str, int], digests: dict[str, str]) -> None:
    """Re-read every table from the target and compare it with the source's rows and digest."""
    for model in ALL_MODELS:
        name = model._meta.table_name
        count, digest = table_digest(target, model)
        if (count, digest) != (tables[name], digests[name]):
            raise IntegrityError(f"the copy of table {name} differs from the source ({count} rows, expected "
                                 f"{tables[name]}); nothing was committed")


def verify_copy(source: pw.Database, target: pw.Database) -> dict[str, tuple[int, int, bool]]:
    """Compare every table of two installations: {table: (source rows, target rows, equal)}."""
    out = {}
    for model in ALL_MODELS:
        a = table_digest(source, model)
        b = table_digest(target, model)
        out[model._meta.table_name] = (a[0], b[0], a == b)
    return out
