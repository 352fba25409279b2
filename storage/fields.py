"""Field types that keep money exact and time in UTC on every backend.

`DecimalField` stores a Decimal exactly: ``NUMERIC`` (no precision limit) on
PostgreSQL, ``DECIMAL(65, 30)`` on MySQL/MariaDB, and on SQLite canonical text
in a column declared ``TEXT COLLATE DECIMAL`` — SQLite's NUMERIC affinity would
turn ``0.1`` into a float. tradeguard registers the ``DECIMAL`` collation on
every SQLite connection, so ``ORDER BY`` and range filters compare numerically
(``9 < 10``, ``-10 < -1``). Sums are done in Python, never in SQL.

`UTCDateTimeField` stores ``TIMESTAMPTZ`` on PostgreSQL and fixed-width ISO
text (``2026-01-02T03:04:05.000000Z``, which sorts as text) on SQLite; it
refuses naive datetimes and always returns aware UTC datetimes.
"""

from __future__ import annotations

import enum
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Type

import peewee

from tradeguard.clock import ensure_utc, isoformat, parse_iso
from tradeguard.money import plain, to_decimal

DECIMAL_TYPE = "TG_DECIMAL"
DATETIME_TYPE = "TG_DATETIME"

#: Backend-specific column types for the custom fields, passed to each Database.
FIELD_TYPES = {
    "sqlite": {DECIMAL_TYPE: "TEXT COLLATE DECIMAL", DATETIME_TYPE: "TEXT", "JSON": "TEXT"},
    "postgres": {DECIMAL_TYPE: "NUMERIC", DATETIME_TYPE: "TIMESTAMPTZ", "JSON": "TEXT"},
    "mysql": {DECIMAL_TYPE: "DECIMAL(65, 30)", DATETIME_TYPE: "DATETIME(6)", "JSON": "LONGTEXT"},
}


_backends: dict[type, str] = {}


def backend_of(database: Any) -> str:
    """'sqlite', 'postgres' or 'mysql' for a peewee Database (or proxy)."""
    database = getattr(database, "obj", database)
    backend = _backends.get(type(database))
    if backend is not None:
        return backend
    if isinstance(database, peewee.SqliteDatabase):
        backend = "sqlite"
    elif isinstance(database, peewee.PostgresqlDatabase):
        backend = "postgres"
    elif isinstance(database, peewee.MySQLDatabase):
        backend = "mysql"
    else:
        raise TypeError(f"unsupported database {type(database).__name__}")
    _backends[type(database)] = backend
    return backend


def decimal_collation(left: str, right: str) -> int:
    """SQLite collation comparing decimal text numerically."""
    a, b = Decimal(left), Decimal(right)
    return (a > b) - (a < b)


class DecimalField(peewee.Field):
    """An exact Decimal column (see module docstring). Floats are refused."""

    field_type = DECIMAL_TYPE

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is Decimal and value.is_finite():
            number = value
        elif hasattr(value, "__sql__"):  # an expression, e.g. F() arithmetic
            return value
        else:
            number = to_decimal(value, self.name or "value")
        if backend_of(self.model._meta.database) == "sqlite":
            return plain(number)
        return number

    def python_value(self, value: Any) -> Decimal | None:
        if value is None:
            return None
        if type(value) is str:  # SQLite's canonical text
            return Decimal(value)
        if isinstance(value, Decimal):
            return value
        if isinstance(value, float):  # never expected: the column types keep text or NUMERIC
            raise TypeError("DecimalField read a float: the column lost precision")
        return Decimal(str(value))


class UTCDateTimeField(peewee.Field):
    """A timezone-aware UTC timestamp (see module docstring)."""

    field_type = DATETIME_TYPE

    def db_value(self, value: Any) -> Any:
        if value is None:
            return value
        if type(value) is not datetime or value.tzinfo is not timezone.utc:  # not already aware UTC
            if hasattr(value, "__sql__"):
                return value
            if isinstance(value, str):
                value = parse_iso(value)
            value = ensure_utc(value)
        backend = backend_of(self.model._meta.database)
        if backend == "sqlite":
            return isoformat(value)
        if backend == "mysql":
            return value.replace(tzinfo=None)
        return value

    def python_value(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_iso(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class EnumField(peewee.CharField):
    """A string enumeration, checked by the database (CHECK … IN (…))."""

    def __init__(self, enum_class: Type[enum.Enum], **kwargs: Any):
        self.enum_class = enum_class
        values = [member.value for member in enum_class]
        kwargs.setdefault("max_length", max(len(v) for v in values))
        super().__init__(**kwargs)
        self._values = values
        self._members = {member.value: member for member in enum_class}

    def bind(self, model, name, set_attribute=True):  # type: ignore[override]
        super().bind(model, name, set_attribute)
        allowed = ", ".join("'%s'" % v for v in self._values)
        column = self.column_name
        check = peewee.Check(f"{column} IN ({allowed})")
        self.constraints = list(self.constraints or []) + [check]

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is self.enum_class:
            return value._value_
        if isinstance(value, enum.Enum):
            value = value.value
        return self.enum_class(value).value

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        member = self._members.get(value)
        return member if member is not None else self.enum_class(value)


class JSONText(str):
    """A JSON column's text as read by `tradeguard.storage.rows`, decoded on first access (the order path
    reads rows whose JSON it never looks at); written back unchanged."""

    __slots__ = ()


class _JSONAccessor(peewee.FieldAccessor):
    def __get__(self, instance: Any, instance_type: Any = None) -> Any:
        if instance is None:
            return self.field
        value = instance.__data__.get(self.name)
        if type(value) is JSONText:
            value = instance.__data__[self.name] = json.loads(value)
        return value


class JSONField(peewee.TextField):
    """JSON stored as text exactly as written (Decimals as strings, keys sorted)."""

    field_type = "JSON"
    accessor_class = _JSONAccessor

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is JSONText:
            return str(value)
        return dumps(value)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    """Compact, sorted JSON with Decimals as exact strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False)


def db_converter(field: peewee.Field, backend: str) -> Any:
    """``field.db_value`` for *backend*, with the common case of each field type inlined: a Decimal, an
    aware UTC datetime, an enum member, an int or a str already in the column's form. Anything else goes
    through ``field.db_value`` itself, so the stored values are the same (used by pre-built statements)."""
    db_value = field.db_value
    if isinstance(field, peewee.ForeignKeyField):
        field = field.rel_field
    if isinstance(field, DecimalField) and backend == "sqlite":
        return lambda v: plain(v) if type(v) is Decimal and v.is_finite() else db_value(v)
    if isinstance(field, UTCDateTimeField) and backend == "sqlite":
        return lambda v: isoformat(v) if type(v) is datetime and v.tzinfo is timezone.utc else db_value(v)
    if isinstance(field, EnumField):
        kind = field.enum_class
        return lambda v: v._value_ if type(v) is kind else db_value(v)
    if type(field).db_value is peewee.Field.db_value and isinstance(field, peewee.IntegerField):
        return lambda v: v if type(v) is int else db_value(v)
    if type(field).db_value is peewee.Field.db_value and isinstance(field, (peewee.CharField, peewee.TextField)):
        return lambda v: v if type(v) is str else db_value(v)
    return db_value
