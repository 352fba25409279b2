"""Export a table as CSV or JSON Lines, streaming in constant memory.

Rows are read in pages ordered by (time, id) (`tradeguard.reporting.stream.keyset`)
and written one at a time, so memory does not grow with the table. Values
keep their exact meaning: Decimals as their exact text (``0.1``, never
``0.1000000000000000055``), timestamps as fixed-width UTC ISO-8601
(``2026-01-02T03:04:05.000006Z``), enums as their value, JSON columns as JSON
(nested in JSON Lines, JSON text in a CSV cell), NULL as an empty CSV cell or
``null``. Every row also carries the account's name beside its id.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import IO, Any, Callable, Iterator

import peewee

from tradeguard.clock import isoformat
from tradeguard.errors import ValidationError
from tradeguard.money import plain
from tradeguard.reporting.stream import keyset
from tradeguard.storage.fields import DecimalField, EnumField, JSONField, UTCDateTimeField, dumps
from tradeguard.storage.models import Account, CashFlow, EmergencyEvent, Order, Position, RiskLog, SyncLog, Trade

#: Exportable tables: name -> (model, the time column that --since/--until filter on).
TABLES: dict[str, tuple[type[peewee.Model], str]] = {
    "orders": (Order, "created_at"),
    "trades": (Trade, "exchange_timestamp"),
    "positions": (Position, "updated_at"),
    "risk-log": (RiskLog, "created_at"),
    "sync-log": (SyncLog, "started_at"),
    "emergency-events": (EmergencyEvent, "created_at"),
    "cash-flows": (CashFlow, "occurred_at"),
}
FORMATS = ("csv", "jsonl")


def columns(model: type[peewee.Model]) -> list[tuple[str, peewee.Field | None]]:
    """(header, field) pairs in table order; the account's name follows ``account_id``."""
    result: list[tuple[str, peewee.Field | None]] = []
    for field in model._meta.sorted_fields:
        result.append((field.column_name, field))
        if field.name == "account":
            result.append(("account", None))
    return result


def _converter(field: peewee.Field | None, jsonl: bool) -> Callable[[Any], Any] | None:
    """How one column's Python value is written, chosen once per column (None: as it is —
    csv writes None as an empty cell, JSON as null)."""
    null: Any = None if jsonl else ""

    def wrap(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda value: null if value is None else convert(value)

    if isinstance(field, DecimalField):
        return wrap(plain)
    if isinstance(field, UTCDateTimeField):
        return wrap(isoformat)
    if isinstance(field, EnumField):
        return wrap(lambda value: value.value)
    if isinstance(field, peewee.BooleanField):
        return wrap(bool) if jsonl else wrap(lambda value: "true" if value else "false")
    if isinstance(field, JSONField):
        return None if jsonl else wrap(dumps)
    return None


def _position(fields: list[peewee.Field], field: peewee.Field) -> int:
    """Index of *field* (peewee fields overload ``==``, so ``list.index`` cannot be used)."""
    return next(i for i, candidate in enumerate(fields) if candidate is field)


def iter_rows(table: str, *, since: datetime | None = None, until: datetime | None = None,
              account_id: int | None = None) -> Iterator[tuple[Any, ...]]:
    """The rows of *table* as tuples of Python values in ``sorted_fields`` order, oldest first."""
    if table not in TABLES:
        raise ValidationError(f"cannot export {table!r}: choose one of {', '.join(TABLES)}")
    model, time_name = TABLES[table]
    time_field = getattr(model, time_name)
    fields = model._meta.sorted_fields
    query = model.select(*fields).tuples()
    if since is not None:
        query = query.where(time_field >= since)
    if until is not None:
        query = query.where(time_field < until)
    if account_id is not None:
        query = query.where(model.account == account_id)
    time_at = _position(fields, time_field)
    id_at = _position(fields, model._meta.primary_key)
    return keyset(query, time_field, model._meta.primary_key, key_of=lambda row: (row[time_at], row[id_at]))


def export_table(table: str, out: IO[str], *, format: str = "csv", since: datetime | None = None,
                 until: datetime | None = None, account_id: int | None = None) -> int:
    """Write *table* to *out* as ``csv`` (with a header) or ``jsonl``; return the number of rows."""
    if format not in FORMATS:
        raise ValidationError(f"format: expected csv or jsonl, got {format!r}")
    rows = iter_rows(table, since=since, until=until, account_id=account_id)  # validates the name
    model, _ = TABLES[table]
    fields = model._meta.sorted_fields
    names = {a.id: a.name for a in Account.select(Account.id, Account.name)}
    jsonl = format == "jsonl"
    headers = [header for header, _ in columns(model)]
    # (position in the row tuple, converter); the account's name is looked up from account_id
    plan: list[tuple[int, Callable[[Any], Any] | None]] = []
    for header, field in columns(model):
        if field is None:
            account_at = _position(fields, model.account)
            plan.append((account_at, lambda value: names.get(value, None if jsonl else "")))
        else:
            plan.append((_position(fields, field), _converter(field, jsonl)))
    count = 0
    if jsonl:
        dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        for row in rows:
            values = [row[i] if convert is None else convert(row[i]) for i, convert in plan]
            out.write(dump(dict(zip(headers, values))) + "\n")
            count += 1
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        for row in rows:
            writer.writerow([row[i] if convert is None else convert(row[i]) for i, convert in plan])
            count += 1
    return count
