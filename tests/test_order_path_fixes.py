"""Reconciliation imports per account, and the one shared write transaction."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from orders_helpers import paper_account
from tradeguard.storage import use_database, write_transaction
from tradeguard.storage.models import Order
from tradeguard.types import OrderRequest, OrderType, Side


def test_reconcile_imports_a_venue_order_whose_client_id_another_account_uses(engine):
    paper_account(engine, "a", price="100")
    venue_b = paper_account(engine, "b", price="100")
    mine = engine.place_order("a", "BTC/USDT", "buy", "1", type="limit", price="90", actor="t")
    # the same client order id, placed on account b's venue outside tradeguard
    request = OrderRequest(account="b", symbol="BTC/USDT", side=Side.BUY, quantity=Decimal("1"),
                           type=OrderType.LIMIT, price=Decimal("80"))
    with use_database(engine.db):
        placed = venue_b.create_order(request, mine.client_order_id)

    report = engine.reconcile("b")

    assert report["imported_orders"] == 1
    imported = engine.orders.list("b")
    assert [(o.exchange_order_id, o.imported, o.status.value, o.price) for o in imported] == \
        [(placed.exchange_order_id, True, "OPEN", Decimal("80"))]
    assert engine.orders.get(mine.id).account.name == "a"  # account a's order is untouched
    assert engine.reconcile("b")["imported_orders"] == 0  # found again by its venue id: imported once
    assert len(engine.orders.list("b")) == 1


def test_one_write_transaction_serves_audit_locking_and_storage():
    from tradeguard.audit import chain
    from tradeguard.orders import locking

    assert chain.write_transaction is write_transaction
    assert locking.write_transaction is write_transaction


def test_write_transaction_takes_the_sqlite_write_lock_at_begin(tmp_path):
    from tradeguard.storage import connect

    path = tmp_path / "t.db"
    db = connect(f"sqlite:///{path}")
    db.connect(reuse_if_open=True)
    other = sqlite3.connect(path, timeout=0)
    try:
        with write_transaction(db):
            # nothing written yet, yet another writer is already shut out
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            with write_transaction(db):  # nested: a savepoint inside the same transaction
                assert db.in_transaction()
        other.execute("BEGIN IMMEDIATE")
        other.rollback()
    finally:
        other.close()
        db.close()


def _daily_loss(order):
    [rule] = [r for r in order.risk_details["rules"] if r["rule"] == "max_daily_loss"]
    return Decimal(rule["metrics"]["daily_loss"])


def test_daily_loss_follows_new_and_removed_trades(engine):
    from tradeguard.storage.models import Position, Trade

    paper_account(engine, "p", price="100", max_daily_loss="1000")
    first = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")  # slippage and fee: a small loss
    engine.place_order("p", "BTC/USDT", "sell", "1", actor="t")
    third = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")  # checked while flat
    with use_database(engine.db):
        trades = list(Trade.select().order_by(Trade.id))
    assert _daily_loss(first) == 0
    # exactly what a full scan of today's trades gives: realized PnL minus quote fees
    assert _daily_loss(third) == -(trades[1].realized_pnl - trades[0].fee - trades[1].fee) > 0
    with use_database(engine.db):
        Trade.delete().where(Trade.id == trades[1].id).execute()  # e.g. a retention job or a re-seed
    fourth = engine.place_order("p", "BTC/USDT", "sell", "1", actor="t")
    with use_database(engine.db):
        assert Position.get().quantity == 0  # the fourth order closed the long 1 @ 100.05 it was checked against
    unrealized_then = Decimal(100) - Decimal("100.05")
    assert _daily_loss(fourth) == trades[0].fee + trades[2].fee - unrealized_then


def test_order_rate_limit_blocks_at_the_limit(engine):
    from tradeguard.errors import RiskRejected

    paper_account(engine, "p", price="100")
    engine.risk.set("p", "order_rate_limit", {"max_orders_per_minute": 3})
    for _ in range(3):
        engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")
    with pytest.raises(RiskRejected, match=r"3 orders in the last minute ≥ max_orders_per_minute 3"):
        engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")
    engine.risk.set("p", "order_rate_limit", {"max_orders_per_minute": 10})
    engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")  # the rejected one does not count
