"""Shared helpers for the operations tests (db copy, doctor, retention, PostgreSQL in production)."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from decimal import Decimal
from typing import Any

from tradeguard import Engine
from tradeguard.clock import utcnow
from tradeguard.storage import use_database
from tradeguard.storage.models import (
    ALL_MODELS,
    Account,
    Backup,
    BalanceSnapshot,
    BotRun,
    CashFlow,
    EmergencyEvent,
    Order,
    OrderEvent,
    PluginState,
    PositionSnapshot,
    RiskLog,
    RunnerLease,
    SyncLog,
    Trade,
)
from tradeguard.types import OrderStatus, OrderType, Side

#: A wei amount: 27+ significant digits that must survive every backend bit for bit.
WEI = Decimal("123456789012345678901234567.000000000000000001")
SNAPSHOTS = 700  # more than one copy batch


def new_master_key() -> str:
    """A raw master key (fast to open: no KDF)."""
    return "base64:" + base64.b64encode(os.urandom(32)).decode()


def open_engine(url: str, home: Any, master_key: str | None = None) -> Engine:
    return Engine.open(url, home=home, load_entrypoints=False, master_key=master_key)


def populate(engine: Engine) -> dict[str, Any]:
    """A lived-in installation: vault keys and credentials, accounts, real paper orders,
    hand-made history in every table (old and new rows), audit entries and a checkpoint."""
    accounts = engine.accounts
    accounts.add("main", "paper", initial_capital="100000", max_position_size="5000")
    accounts.add("spare", "paper", initial_capital="500", max_daily_loss="12.345678901234567890")
    engine.vault.set_credentials("main", {"api_key": "AKIA-not-a-real-key", "api_secret": "s3cr3t-value"})
    engine.place_order("main", "BTC/USDT", "buy", "0.01")
    engine.place_order("main", "ETH/USDT", "buy", "0.5")
    now = utcnow()
    old = now - timedelta(days=200)
    with use_database(engine.db), engine.db.atomic():
        main = Account.get(Account.name == "main")
        spare = Account.get(Account.name == "spare")
        # an order whose parent is a *later* row (the copy must link it after inserting both)
        child = Order.create(account=spare, client_order_id="child-1", symbol="BTC/USDT", side=Side.SELL,
                             type=OrderType.LIMIT, price=Decimal("99999.99"), quantity=Decimal("0.001"),
                             status=OrderStatus.CANCELED, created_by="test", created_at=old, updated_at=old)
        parent = Order.create(account=spare, client_order_id="parent-1", symbol="BTC/USDT", side=Side.BUY,
                              type=OrderType.MARKET, quantity=Decimal("0.001"), status=OrderStatus.FILLED,
                              filled_quantity=Decimal("0.001"), created_by="test", created_at=old, updated_at=old)
        child.parent = parent
        child.save()
        OrderEvent.create(order=parent, old_status=None, new_status="FILLED", actor="test", detail={"x": "1.10"})
        Trade.create(account=spare, order=parent, exchange_trade_id="chain-1", exchange_timestamp=old, symbol="ETH/USDT",
                     side=Side.BUY, price=Decimal("0.000000000000000001"), quantity=WEI, gas_price=WEI,
                     gas_used=21000, block_number=19_000_000, tx_hash="0x" + "ab" * 32)
        CashFlow.create(account=main, kind="DEPOSIT", asset="USDT", amount=Decimal("0.10"), external_id="dep-1",
                        source="test", occurred_at=old)
        RiskLog.create(account=main, rule="max_position_size", event_type="BLOCK", severity="WARNING",
                       message="too big", action_taken="blocked", created_at=old, metrics={"limit": "1000"})
        EmergencyEvent.create(account=spare, event_type="HALT", reason="drill", source="test", created_at=old,
                              resolved=True, resolved_by="ops", resolved_at=old)
        run = BotRun.create(account=spare, bot="sma", owner="host-a:123", started_at=old, stopped_at=old)
        RunnerLease.create(account=spare, owner="host-a:123", run=run, acquired_at=old, heartbeat_at=old)
        PluginState.create(plugin="test", key="cursor", value={"n": 7})
        Backup.create(target="file:///tmp/b", name="tg-old.tgb", sha256="0" * 64, db_kind="sqlite", schema_version=2,
                      created_at=old, status="verified")
        for account in (main, spare):
            SyncLog.create(account=account, sync_type="full", source="api", status="ok", started_at=old,
                           balance_after={"USDT": "1.0"})
            SyncLog.create(account=account, sync_type="full", source="api", status="ok", started_at=now - timedelta(days=100))
            SyncLog.create(account=account, sync_type="full", source="api", status="failed", error_code="timeout",
                           started_at=now - timedelta(days=95))
            SyncLog.create(account=account, sync_type="full", source="api", status="ok", started_at=now)
        rows = []
        for i in range(SNAPSHOTS):
            at = old + timedelta(minutes=i) if i < SNAPSHOTS // 2 else now - timedelta(minutes=i)
            rows.append({"account": main.id, "asset": "USDT", "free": Decimal(f"{i}.5"),
                         "used": Decimal(0), "total": Decimal(f"{i}.5"), "source": "sync", "taken_at": at})
        BalanceSnapshot.insert_many(rows).execute()
        PositionSnapshot.create(account=main, symbol="BTC/USDT", quantity=Decimal("0.01"), average_cost=Decimal("50000"),
                                source="sync", taken_at=old)
        PositionSnapshot.create(account=main, symbol="BTC/USDT", quantity=Decimal("0.01"), average_cost=Decimal("50000"),
                                source="sync", taken_at=now)
    engine.set_setting("profile", "test")
    engine.audit.checkpoint("test")
    accounts.set("spare", max_position_size="2500")  # an entry after the checkpoint
    return {"main": main.id, "spare": spare.id, "child": child.id, "parent": parent.id}


def raw_rows(db: Any, model: Any) -> list[tuple]:
    """Every row of a table as the driver returns it, in primary-key order."""
    with use_database(db):
        sql, params = model.select().order_by(model._meta.primary_key).sql()
        return [tuple(r) for r in db.execute_sql(sql, params).fetchall()]


def table_counts(db: Any) -> dict[str, int]:
    with use_database(db):
        return {m._meta.table_name: m.select().count() for m in ALL_MODELS}
