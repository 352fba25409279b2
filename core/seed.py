"""Development seed data and clearing (``tradeguard db seed`` / ``db clear``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from tradeguard import audit
from tradeguard.clock import utcnow
from tradeguard.errors import ValidationError
from tradeguard.storage import use_database
from tradeguard.storage.models import ALL_MODELS, Account, Order, Position, SchemaVersion, Setting, Trade, VaultKey
from tradeguard.types import OrderStatus, OrderType, Side

SEED_ACCOUNT = "paper-demo"
_KEEP = (SchemaVersion, Setting, VaultKey)

# (client id, side, quantity, price) — a round trip on BTC/USDT, a day ago
_HISTORY = (
    ("seed-0001", Side.BUY, Decimal("0.01"), Decimal("60000")),
    ("seed-0002", Side.SELL, Decimal("0.01"), Decimal("60600")),
    ("seed-0003", Side.BUY, Decimal("0.005"), Decimal("61000")),
)


def seed_development(engine: Any, force: bool = False) -> dict[str, Any]:
    """Create the seed account and history unless present; refuse on production."""
    if engine.profile == "production":
        raise ValidationError("db seed refuses to run on a database whose profile is production")
    with use_database(engine.db), engine.db.atomic():
        existing = Account.get_or_none(Account.name == SEED_ACCOUNT)
        if existing is not None and not force:
            return {"account": SEED_ACCOUNT, "created": "already present", "orders": 0}
        if existing is not None:
            Trade.delete().where(Trade.account == existing).execute()
            Position.delete().where(Position.account == existing).execute()
            Order.delete().where(Order.account == existing).execute()
            existing.delete_instance(recursive=True)
        account = Account.create(name=SEED_ACCOUNT, exchange="paper", initial_capital=Decimal("10000"),
                                 current_cash=Decimal("10000"))
        start = utcnow() - timedelta(days=1)
        cash = Decimal("10000")
        realized = Decimal(0)
        for index, (client_id, side, qty, price) in enumerate(_HISTORY):
            at = start + timedelta(minutes=10 * index)
            fee = (qty * price * Decimal("0.001")).quantize(Decimal("0.00000001"))
            order = Order.create(account=account, client_order_id=client_id, exchange_order_id=f"paper-{client_id}",
                                 symbol="BTC/USDT", side=side, type=OrderType.MARKET, quantity=qty,
                                 filled_quantity=qty, average_fill_price=price, status=OrderStatus.FILLED,
                                 fee=fee, fee_currency="USDT", created_by="seed", created_at=at, updated_at=at,
                                 submitted_at=at, filled_at=at, reason="development seed")
            # realized PnL before fees, as the order path books it (fees are reported beside it)
            pnl = (price - _HISTORY[0][3]) * qty if side is Side.SELL else Decimal(0)
            realized += pnl
            Trade.create(account=account, order=order, exchange_trade_id=f"t-{client_id}", exchange_timestamp=at,
                         symbol="BTC/USDT", side=side, price=price, quantity=qty, fee=fee, fee_currency="USDT",
                         fee_rate=Decimal("0.001"), usd_value=qty * price,
                         realized_pnl=pnl if side is Side.SELL else Decimal(0))
            cash += (-qty * price if side is Side.BUY else qty * price) - fee
        Position.create(account=account, symbol="BTC/USDT", quantity=_HISTORY[2][2], average_cost=_HISTORY[2][3],
                        realized_pnl=realized, opened_at=start)
        account.current_cash = cash
        account.save()
        audit.append("seed", "db.seed", f"account:{SEED_ACCOUNT}", {"orders": len(_HISTORY)})
    return {"account": SEED_ACCOUNT, "created": "created", "orders": len(_HISTORY)}


def clear_data(engine: Any) -> dict[str, int]:
    """Delete every row except the schema version, settings and vault keys."""
    counts: dict[str, int] = {}
    with use_database(engine.db), engine.db.atomic():
        for model in reversed(ALL_MODELS):
            if model in _KEEP:
                continue
            if model is Order:
                Order.update(parent=None).execute()
            counts[model._meta.table_name] = model.delete().execute()
    return counts
