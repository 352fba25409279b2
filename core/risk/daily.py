"""Today's realized PnL of an account, kept as a running figure per database.

`RiskContext.realized_pnl_today` is read by the daily-loss rule on every
order; summing every trade of the day each time grows with the day's trade
count. This keeps, per (database, account, day), the count, the highest id
and the exact Decimal total of the trades already summed, and on each call
asks the database only for the count and highest id (one indexed aggregate)
and the rows added since. Anything else — a trade deleted, a count that
does not add up — recomputes the whole day, so the figure is always the one
a full scan gives. Called inside the account lock, where no trade of the
account can be in flight.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime
from decimal import Decimal
from typing import Any

import peewee

from tradeguard.storage.models import Trade

ZERO = Decimal(0)
_WHERE = "account_id = {0} AND exchange_timestamp >= {0}"
_COUNT = "SELECT COUNT(*), MAX(id) FROM trade WHERE " + _WHERE
_ROWS = "SELECT id, realized_pnl, fee, fee_currency FROM trade WHERE " + _WHERE + " AND id > {0}"

# database -> {(account id, day start, quote currency): (count, max id, total)}
_running: "weakref.WeakKeyDictionary[peewee.Database, dict[tuple, tuple[int, int, Decimal]]]" = \
    weakref.WeakKeyDictionary()
_lock = threading.Lock()


def realized_since(db: peewee.Database, account_id: int, since: datetime, quote: str) -> Decimal:
    """Σ realized PnL − quote-currency fees over the account's trades at or after *since* (exact)."""
    p = db.param
    stamp = Trade.exchange_timestamp.db_value(since)
    count, top = db.execute_sql(_COUNT.format(p), (account_id, stamp)).fetchone()
    count, top = int(count or 0), int(top or 0)
    key = (account_id, since, quote)
    with _lock:
        entries = _running.get(db)  # published dicts are never changed: read outside the lock
    cached = entries.get(key) if entries is not None else None
    if cached is not None and cached[:2] == (count, top):
        return cached[2]
    base_count, base_top, total = cached if cached is not None and count > cached[0] else (0, 0, ZERO)
    rows = db.execute_sql(_ROWS.format(p), (account_id, stamp, base_top)).fetchall()
    if base_count + len(rows) != count:  # something changed below the last id seen: start over
        base_count, base_top, total = 0, 0, ZERO
        rows = db.execute_sql(_ROWS.format(p), (account_id, stamp, 0)).fetchall()
    added, top = _sum(rows, quote, base_top)
    total += added
    count = base_count + len(rows)
    with _lock:
        entries = _running.get(db) or {}
        entries = {k: v for k, v in entries.items() if k[1] == since}  # yesterday's figures go
        entries[key] = (count, top, total)
        _running[db] = entries
    return total


def _sum(rows: list[Any], quote: str, top: int) -> tuple[Decimal, int]:
    """(Σ realized PnL − quote-currency fees, the highest id seen: *top* or above) over *rows*."""
    pnl, fee = Trade.realized_pnl.python_value, Trade.fee.python_value
    total = ZERO
    for row_id, realized, paid, currency in rows:
        total += pnl(realized) - (fee(paid) if currency in (None, quote) else ZERO)
        if row_id > top:
            top = row_id
    return total, top
