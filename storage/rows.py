"""Pre-built SQL for the order hot path: fetch a row by id, save it, insert one.

`get`, `save` and `create` do what peewee's ``Model.get_by_id``,
``instance.save()`` (every column) and ``Model.create`` do — same SQL, same
value conversions (``db_value`` / ``python_value``), same model instances —
but build each statement once per (model, columns, database dialect) and
reuse it: rebuilding the SQL of a 40-column table costs peewee about a
millisecond a statement, more than SQLite takes to run it.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import peewee

from tradeguard.storage import backend_of, database
from tradeguard.storage.fields import JSONField, JSONText, db_converter

M = TypeVar("M", bound=peewee.Model)

_sql: dict[tuple, str] = {}
_inserts: dict[tuple, tuple[str, tuple[tuple[str, Any], ...]]] = {}  # key -> (INSERT, (field name, db_value))
_updates: dict[tuple, tuple[str, tuple[tuple[str, Any], ...]]] = {}  # key -> (UPDATE or '', (field, db_value))
_lock = threading.Lock()


def _q(db: peewee.Database, name: str) -> str:
    return f"{db.quote[0]}{name}{db.quote[1]}"


def _cached(key: tuple, build: Any) -> str:
    sql = _sql.get(key)
    if sql is None:
        sql = build()
        with _lock:
            _sql[key] = sql
    return sql


def _select_sql(db: peewee.Database, model: type[peewee.Model]) -> str:
    meta = model._meta
    columns = ", ".join(_q(db, f.column_name) for f in meta.sorted_fields)
    return (f"SELECT {columns} FROM {_q(db, meta.table_name)} "
            f"WHERE {_q(db, meta.primary_key.column_name)} = {db.param}")


def _converter(field: peewee.Field) -> Any:
    """The field's ``python_value``, or None where the drivers already return the Python value
    (integers, foreign keys to them and text: sqlite3, psycopg2 and pymysql give int and str)."""
    if isinstance(field, peewee.ForeignKeyField):
        return _converter(field.rel_field)
    if isinstance(field, JSONField):
        return JSONText  # decoded when the attribute is first read
    plain_value = type(field).python_value is peewee.Field.python_value
    if plain_value and isinstance(field, (peewee.IntegerField, peewee.CharField, peewee.TextField)):
        return None
    return field.python_value


_plans: dict[type, tuple[tuple[str, Any], ...]] = {}


def _plan(model: type[peewee.Model]) -> tuple[tuple[str, Any], ...]:
    plan = _plans.get(model)
    if plan is None:
        plan = tuple((f.name, _converter(f)) for f in model._meta.sorted_fields)
        _plans[model] = plan
    return plan


def from_row(model: type[M], row: tuple) -> M:
    """A model instance from a row of every column in ``sorted_fields`` order (not dirty)."""
    instance = model(__no_default__=1)
    instance.__data__ = {name: value if convert is None or value is None else convert(value)
                         for (name, convert), value in zip(_plan(model), row)}
    return instance


def get(model: type[M], pk: Any) -> M:
    """``model.get_by_id(pk)``: the row, or ``model.DoesNotExist``."""
    db = database.obj
    sql = _cached(("get", model, db.param, db.quote), lambda: _select_sql(db, model))
    row = db.execute_sql(sql, (pk,)).fetchone()
    if row is None:
        raise model.DoesNotExist(f"{model.__name__} {pk} does not exist")
    return from_row(model, row)


def get_or_none(model: type[M], pk: Any) -> M | None:
    """``model.get_or_none(model.id == pk)``."""
    try:
        return get(model, pk)
    except model.DoesNotExist:
        return None


def save(instance: peewee.Model, *, only_dirty: bool = False) -> int:
    """``instance.save()`` of a stored row: UPDATE every loaded column; returns the rows changed.

    *only_dirty*: only the columns assigned since the row was read (``instance.x = …``; a value
    changed in place, e.g. a key of a JSON dict, is not seen) — nothing at all if none was.
    """
    db = database.obj
    model = type(instance)
    data = instance.__data__
    columns = frozenset(instance._dirty if only_dirty else data)
    backend = backend_of(db)
    key = ("save", model, columns, backend, db.param, db.quote)
    plan = _updates.get(key)
    if plan is None:
        meta = model._meta
        pk_field = meta.primary_key
        fields = tuple(f for f in meta.sorted_fields if f is not pk_field and f.name in columns)
        sets = ", ".join(f"{_q(db, f.column_name)} = {db.param}" for f in fields)
        sql = f"UPDATE {_q(db, meta.table_name)} SET {sets} WHERE {_q(db, pk_field.column_name)} = {db.param}"
        plan = (sql if fields else "", tuple((f.name, db_converter(f, backend)) for f in (*fields, pk_field)))
        with _lock:
            _updates[key] = plan
    sql, converters = plan
    if not sql:
        return 0
    rows = db.execute_sql(sql, [convert(data[name]) for name, convert in converters]).rowcount
    instance._dirty.clear()
    return rows


_names: dict[tuple, tuple[str, ...] | None] = {}


def _related_names(model: type[peewee.Model], names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The foreign-key fields among *names*, or None if a name is not a field of *model* (e.g. a column
    name such as ``account_id``, which peewee's accessors map)."""
    key = (model, names)
    if key not in _names:
        fields = model._meta.fields
        _names[key] = None if any(name not in fields for name in names) else tuple(
            name for name in names if isinstance(fields[name], peewee.ForeignKeyField))
    return _names[key]


def create(model: type[M], **values: Any) -> M:
    """``model.create(**values)``: defaults applied, one INSERT, the new id set on the instance."""
    db = database.obj
    meta = model._meta
    related = _related_names(model, tuple(values))
    if related is not None and not any(isinstance(values[name], peewee.Model) for name in related):
        instance = model(__no_default__=1)  # what Model(**values) does, without an accessor call per value
        data = instance.__data__ = meta.get_default_dict()
        data.update(values)
    else:  # related instances or column names (``account_id``): let peewee's accessors map them
        instance = model(**values)
        data = instance.__data__
    pk_field = meta.primary_key
    backend = backend_of(db)
    postgres = backend == "postgres"
    key = ("create", model, tuple(data), data.get(pk_field.name) is None, backend, db.param, db.quote)
    plan = _inserts.get(key)
    if plan is None:
        fields = tuple(f for f in meta.sorted_fields if f.name in data and not (f is pk_field and data[f.name] is None))
        columns = ", ".join(_q(db, f.column_name) for f in fields)
        marks = ", ".join([db.param] * len(fields))
        returning = f" RETURNING {_q(db, pk_field.column_name)}" if postgres else ""
        plan = (f"INSERT INTO {_q(db, meta.table_name)} ({columns}) VALUES ({marks}){returning}",
                tuple((f.name, db_converter(f, backend)) for f in fields))
        with _lock:
            _inserts[key] = plan
    sql, converters = plan
    cursor = db.execute_sql(sql, [convert(data[name]) for name, convert in converters])
    if data.get(pk_field.name) is None:
        data[pk_field.name] = cursor.fetchone()[0] if postgres else cursor.lastrowid
    instance._dirty.clear()
    return instance


def select(model: type[M], where: str, params: tuple | list) -> list[M]:
    """Rows of *model* matching *where* — SQL over column names, ``{p}`` for each parameter
    (e.g. ``"account_id = {p} AND status = {p}"``) — as model instances."""
    db = database.obj

    def build() -> str:
        meta = model._meta
        columns = ", ".join(_q(db, f.column_name) for f in meta.sorted_fields)
        return f"SELECT {columns} FROM {_q(db, meta.table_name)} WHERE " + where.format(p=db.param)

    sql = _cached(("select", model, where, db.param, db.quote), build)
    return [from_row(model, row) for row in db.execute_sql(sql, tuple(params)).fetchall()]
