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
import enum
import json
from datetime import datetime
from decimal import Decimal
from typing import IO, Any, Iterator

import peewee

from tradeguard.clock import isoformat
from tradeguard.errors import ValidationError
from tradeguard.money import plain
from tradeguard.reporting.stream import keyset
from tradeguard.storage.fields import JSONField, dumps
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


def _value(value: Any, field: peewee.Field | None, jsonl: bool) -> Any:
    if value is None:
        return None if jsonl else ""
    if isinstance(value, bool):
        return value if jsonl else ("true" if value else "false")
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(field, JSONField) and not jsonl:
        return dumps(value)
    return value


def iter_rows(table: str, *, since: datetime | None = None, until: datetime | None = None,
              account_id: int | None = None) -> Iterator[dict[str, Any]]:
    """The rows of *table* as dicts (raw Python values), oldest first."""
    if table not in TABLES:
        raise ValidationError(f"cannot export {table!r}: choose one of {', '.join(TABLES)}")
    model, time_name = TABLES[table]
    time_field = getattr(model, time_name)
    query = model.select(*model._meta.sorted_fields).dicts()
    if since is not None:
        query = query.where(time_field >= since)
    if until is not None:
        query = query.where(time_field < until)
    if account_id is not None:
        query = query.where(model.account == account_id)
    return keyset(query, time_field, model._meta.primary_key)


def export_table(table: str, out: IO[str], *, format: str = "csv", since: datetime | None = None,
                 until: datetime | None = None, account_id: int | None = None) -> int:
    """Write *table* to *out* as ``csv`` (with a header) or ``jsonl``; return the number of rows."""
    if format not in FORMATS:
        raise ValidationError(f"format: expected csv or jsonl, got {format!r}")
    rows = iter_rows(table, since=since, until=until, account_id=account_id)  # validates the name
    model, _ = TABLES[table]
    cols = columns(model)
    names = {a.id: a.name for a in Account.select(Account.id, Account.name)}
    jsonl = format == "jsonl"
    writer = None if jsonl else csv.writer(out, lineterminator="\n")
    if writer is not None:
        writer.writerow([header for header, _ in cols])
    count = 0
    for row in rows:
        values = []
        for header, field in cols:
            if field is None:
                raw = names.get(row.get("account"))
            else:
                raw = row[field.name]
            values.append(_value(raw, field, jsonl))
        if writer is not None:
            writer.writerow(values)
        else:
            out.write(json.dumps(dict(zip((h for h, _ in cols), values)), ensure_ascii=False,
                                 separators=(",", ":")) + "\n")
        count += 1
    return count
