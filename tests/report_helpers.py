"""Rows written directly (fills with hand-computed PnL) for the report, export and replay tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from tradeguard.storage import use_database
from tradeguard.storage.models import CashFlow, EmergencyEvent, Order, Position, RiskLog, Trade
from tradeguard.types import OrderStatus, OrderType, Side

D = Decimal
_ids = itertools.count(1)


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    """2026-01-<day> <hour>:<minute> UTC."""
    return datetime(2026, 1, day, hour, minute, tzinfo=timezone.utc)


def fill(engine: Any, account: Any, when: datetime, side: str, qty: str, price: str, fee: str = "0",
         realized: str = "0", symbol: str = "BTC/USDT", fee_currency: str = "USDT") -> Trade:
    """One filled order and its trade row."""
    n = next(_ids)
    with use_database(engine.db):
        order = Order.create(account=account.id, client_order_id=f"tg-test-{n}", exchange_order_id=f"x-{n}",
                             symbol=symbol, side=Side(side), type=OrderType.MARKET, quantity=D(qty),
                             filled_quantity=D(qty), average_fill_price=D(price), status=OrderStatus.FILLED,
                             fee=D(fee), fee_currency=fee_currency, created_by="test", created_at=when,
                             updated_at=when, submitted_at=when, filled_at=when)
        return Trade.create(account=account.id, order=order.id, exchange_trade_id=f"t-{n}", exchange_timestamp=when,
                            symbol=symbol, side=Side(side), price=D(price), quantity=D(qty), fee=D(fee),
                            fee_currency=fee_currency, realized_pnl=D(realized), created_at=when)


def cash_flow(engine: Any, account: Any, when: datetime, kind: str, amount: str, asset: str = "USDT") -> CashFlow:
    with use_database(engine.db):
        return CashFlow.create(account=account.id, kind=kind, asset=asset, amount=D(amount),
                               external_id=f"cf-{next(_ids)}", source="test", occurred_at=when)


def position(engine: Any, account: Any, symbol: str, qty: str, cost: str, realized: str) -> Position:
    with use_database(engine.db):
        return Position.create(account=account.id, symbol=symbol, quantity=D(qty), average_cost=D(cost),
                               realized_pnl=D(realized), opened_at=at(1))


def rejection(engine: Any, account: Any, when: datetime, rule: str, event_type: str = "BLOCK") -> RiskLog:
    with use_database(engine.db):
        return RiskLog.create(account=account.id, rule=rule, event_type=event_type, severity="CRITICAL",
                              message=f"{rule} refused", action_taken="rejected", created_at=when,
                              daily_loss=D("12.5"))


def emergency(engine: Any, account: Any | None, when: datetime, reason: str = "test stop") -> EmergencyEvent:
    with use_database(engine.db):
        return EmergencyEvent.create(account=account.id if account else None, event_type="HALT", reason=reason,
                                     source="test", orders_cancelled=2, created_at=when)


def round_trip(engine: Any, name: str = "main") -> Any:
    """The hand-computed example of tests/test_reports.py (see there), with matching positions."""
    account = engine.accounts.add(name, "paper", initial_capital="10000")
    fill(engine, account, at(1, 10), "buy", "1", "100", fee="0.1")
    fill(engine, account, at(1, 12), "buy", "1", "110", fee="0.11")
    cash_flow(engine, account, at(2, 8), "DEPOSIT", "1000")
    fill(engine, account, at(2, 10), "sell", "1", "120", fee="0.12", realized="15")
    fill(engine, account, at(3, 10), "sell", "1", "95", fee="0.095", realized="-10")
    position(engine, account, "BTC/USDT", "0", "0", "5")
    return account
