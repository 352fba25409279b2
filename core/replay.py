"""Replay: rebuild positions and PnL from the stored fills alone and compare
them with the stored books (``tradeguard replay ACCOUNT``).

Fills are replayed in the order they were booked (trade id), from the very
first one — average costs depend on every earlier fill — with the order
path's accounting (`tradeguard.reporting.ledger`). Two things are checked:

* each fill's stored ``realized_pnl`` against the PnL it rebuilds to (only
  fills with ``since <= exchange time < until``);
* each stored position (quantity exactly; average cost while open, and
  realized PnL, within `TOLERANCE`) against the rebuilt one, and positions
  that exist on one side only. Positions are compared only when the period
  reaches the present (no ``until``), since the stored rows are current.

Any difference is reported; the CLI exits 4 (integrity) when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeguard.clock import isoformat
from tradeguard.reporting.ledger import Book, Ledger
from tradeguard.reporting.report import fill_rows
from tradeguard.reporting.stream import keyset
from tradeguard.storage.models import Account, Position, Trade

#: Money may differ by rounding this small (a 30-place MySQL DECIMAL); quantities must match exactly.
TOLERANCE = Decimal("1e-18")


@dataclass
class ReplayResult:
    """What a replay found."""

    account: str
    fills_replayed: int = 0
    fills_checked: int = 0
    positions_compared: bool = True
    positions: list[dict[str, Any]] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the stored books agree with the fills."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "ok": self.ok, "fills_replayed": self.fills_replayed,
                "fills_checked": self.fills_checked, "positions_compared": self.positions_compared,
                "positions": self.positions, "differences": self.differences}


def _close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= TOLERANCE


def replay_account(account: Account, since: datetime | None = None, until: datetime | None = None) -> ReplayResult:
    """Rebuild *account*'s books from its fills and compare (see the module docstring)."""
    result = ReplayResult(account.name, positions_compared=until is None)
    ledger = Ledger()
    query = fill_rows().where(Trade.account == account.id)
    if until is not None:
        query = query.where(Trade.exchange_timestamp < until)
    for trade in keyset(query, Trade.id, Trade.id, key_of=lambda t: (t.id, t.id)):
        market = getattr(trade.order_market, "value", trade.order_market) or "spot"
        effect = ledger.apply(trade.symbol, trade.side.value, trade.quantity, trade.price, trade.fee,
                              trade.fee_currency, market)
        result.fills_replayed += 1
        if since is not None and trade.exchange_timestamp < since:
            continue
        result.fills_checked += 1
        if not _close(effect.realized_pnl, trade.realized_pnl):
            result.differences.append({
                "kind": "fill", "trade_id": trade.id, "exchange_trade_id": trade.exchange_trade_id,
                "symbol": trade.symbol, "at": isoformat(trade.exchange_timestamp), "field": "realized_pnl",
                "stored": trade.realized_pnl, "rebuilt": effect.realized_pnl,
            })
    if result.positions_compared:
        _compare_positions(account, ledger, result)
    return result


def _compare_positions(account: Account, ledger: Ledger, result: ReplayResult) -> None:
    stored = {(p.symbol, getattr(p.market, "value", p.market)): p
              for p in Position.select().where(Position.account == account.id)}
    for key in sorted(set(stored) | set(ledger.books)):
        symbol, market = key
        row, book = stored.get(key), ledger.books.get(key) or Book(symbol, market)
        entry: dict[str, Any] = {
            "symbol": symbol, "market": market, "fills": book.fills,
            "quantity": {"stored": row.quantity if row else None, "rebuilt": book.quantity},
            "average_cost": {"stored": row.average_cost if row else None, "rebuilt": book.average_cost},
            "realized_pnl": {"stored": row.realized_pnl if row else None, "rebuilt": book.realized_pnl},
            "ok": True,
        }
        problems: list[tuple[str, Any, Any, str]] = []
        if row is None:
            if book.quantity != 0 or book.realized_pnl != 0:
                problems.append(("position", None, book.quantity, "the fills imply a position that is not stored"))
        else:
            if row.quantity != book.quantity:
                note = "no fills explain this position" if book.fills == 0 else "quantity differs"
                problems.append(("quantity", row.quantity, book.quantity, note))
            if book.quantity != 0 and row.quantity == book.quantity and not _close(row.average_cost, book.average_cost):
                problems.append(("average_cost", row.average_cost, book.average_cost, "average cost differs"))
            if not _close(row.realized_pnl, book.realized_pnl):
                problems.append(("realized_pnl", row.realized_pnl, book.realized_pnl, "realized PnL differs"))
        for name, stored_value, rebuilt, note in problems:
            entry["ok"] = False
            result.differences.append({"kind": "position", "symbol": symbol, "market": market, "field": name,
                                       "stored": stored_value, "rebuilt": rebuilt, "note": note})
        result.positions.append(entry)
