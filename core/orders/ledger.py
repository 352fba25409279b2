"""Fills into the books: trades, the order's fill totals, positions (average
cost, realized PnL) and the account's cash and reservations.

Every function here runs inside the account lock (`locking.account_lock`)
with the account row loaded in that transaction; it changes the row in
memory and the caller saves it once.

Cash model (one ledger per account, in the account's quote currency): a buy
fill pays ``price × quantity``, a sell fill receives it, fees in the quote
currency are paid from cash and fees in the base asset reduce the position.
Positions are signed (short < 0). Equity = cash + Σ quantity × mark price,
so deposits and withdrawals (cash flows) change equity but never PnL.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from tradeguard.clock import utcnow
from tradeguard.storage import database, rows
from tradeguard.storage.models import Account, Order, Position, Trade
from tradeguard.types import Fill, OrderStatus, Side

ZERO = Decimal(0)
#: Enough digits that averages of 18-decimal amounts stay exact in practice.
CONTEXT = decimal.Context(prec=60)


def remaining(order: Order) -> Decimal:
    """Quantity not filled yet."""
    return order.quantity - order.filled_quantity


def position_for(account: Account, symbol: str, market: Any, *, create: bool = False) -> Position | None:
    """The account's position row in *symbol* (created flat if asked)."""
    found = rows.select(Position, "account_id = {p} AND symbol = {p} AND market = {p}",
                        (account.id, symbol, Position.market.db_value(market)))
    position = found[0] if found else None
    if position is None and create:
        position = rows.create(Position, account=account.id, symbol=symbol, market=market, quantity=ZERO,
                               average_cost=ZERO, realized_pnl=ZERO, unrealized_pnl=ZERO)
    return position


def apply_position_change(position: Position, signed_qty: Decimal, price: Decimal) -> Decimal:
    """Move *position* by *signed_qty* at *price*; return the realized PnL of the part that closed.

    Adding to a position averages the cost; reducing realizes
    ``(price - average_cost) × closed`` (reversed for shorts); crossing zero
    closes the old side and opens the rest at *price*.
    """
    with decimal.localcontext(CONTEXT):
        qty, cost = position.quantity, position.average_cost
        realized = ZERO
        if qty == 0 or (qty > 0) == (signed_qty > 0):
            new_qty = qty + signed_qty
            position.average_cost = (abs(qty) * cost + abs(signed_qty) * price) / abs(new_qty)
            position.quantity = new_qty
            if qty == 0:
                position.opened_at = utcnow()
                position.closed_at = None
        else:
            closed = min(abs(signed_qty), abs(qty))
            direction = Decimal(1) if qty > 0 else Decimal(-1)
            realized = (price - cost) * closed * direction
            new_qty = qty + signed_qty
            position.quantity = new_qty
            if new_qty == 0:
                position.average_cost = ZERO
                position.closed_at = utcnow()
            elif (new_qty > 0) != (qty > 0):  # flipped: the rest opens at price
                position.average_cost = price
                position.opened_at = utcnow()
                position.closed_at = None
        position.realized_pnl = position.realized_pnl + realized
        position.unrealized_pnl = (price - position.average_cost) * position.quantity if position.quantity else ZERO
        position.updated_at = utcnow()
        return realized


def release_reservation(account: Account, order: Order, amount: Decimal | None = None) -> Decimal:
    """Give back *amount* (default: all) of the order's reservation; return what was released."""
    amount = order.reserved_amount if amount is None else min(amount, order.reserved_amount)
    if amount <= 0:
        return ZERO
    order.reserved_amount = order.reserved_amount - amount
    if order.reserved_asset == account.quote_currency:
        account.frozen_cash = account.frozen_cash - amount
    return amount


def trade_known(account_id: int, trade_id: str) -> bool:
    """Whether the account already has the venue trade *trade_id* (an indexed lookup)."""
    db = database.obj
    sql = f"SELECT 1 FROM trade WHERE account_id = {db.param} AND exchange_trade_id = {db.param} LIMIT 1"
    return db.execute_sql(sql, (account_id, trade_id)).fetchone() is not None


def apply_fill(account: Account, order: Order | None, fill: Fill, *, imported: bool = False) -> Trade | None:
    """Record *fill* once: a trade, the order's totals, the position and cash.

    Returns the new Trade, or None when this venue trade id was seen before
    (the same fill from a sync, a reconciliation and an order update is
    stored once) or would fill the order beyond its quantity.
    """
    if trade_known(account.id, fill.trade_id):
        return None
    with decimal.localcontext(CONTEXT):
        if order is not None and fill.quantity > remaining(order):
            return None
        market = order.market if order is not None else "spot"
        position = position_for(account, fill.symbol, market, create=True)
        base, quote = _assets(fill.symbol)
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        realized = apply_position_change(position, signed, fill.price)
        notional = fill.price * fill.quantity
        fee_currency = fill.fee_currency or quote
        cash_delta = -notional if fill.side is Side.BUY else notional
        if fill.fee:
            if fee_currency == quote:
                cash_delta -= fill.fee
            elif fee_currency == base:
                position.quantity = position.quantity - fill.fee
        account.current_cash = account.current_cash + cash_delta
        rows.save(position, only_dirty=True)
        trade = rows.create(
            Trade, account=account.id, order=order.id if order is not None else None, exchange_trade_id=fill.trade_id,
            exchange_timestamp=fill.timestamp, symbol=fill.symbol, side=fill.side, price=fill.price,
            quantity=fill.quantity, fee=fill.fee, fee_currency=fee_currency, fee_rate=fill.fee_rate,
            usd_value=notional if quote in ("USD", "USDT", "USDC") else None, realized_pnl=realized,
            slippage=_slippage(order, fill), taker=fill.taker, imported=imported,
        )
        if order is not None:
            before = order.filled_quantity
            order.filled_quantity = before + fill.quantity
            previous_avg = order.average_fill_price or ZERO
            order.average_fill_price = (previous_avg * before + notional) / order.filled_quantity
            order.fee = order.fee + fill.fee
            order.fee_currency = fee_currency
            if order.filled_quantity >= order.quantity:
                release_reservation(account, order)
                order.filled_at = fill.timestamp
            elif order.reserved_amount > 0:
                # release in proportion to the filled part of what was still open
                release_reservation(account, order, order.reserved_amount * fill.quantity / (order.quantity - before))
        account.last_trade_at = fill.timestamp
        return trade


def _slippage(order: Order | None, fill: Fill) -> Decimal | None:
    if order is None or order.price is None:
        return None
    with decimal.localcontext(CONTEXT):
        diff = (fill.price - order.price) / order.price
        return diff if fill.side is Side.BUY else -diff


def _assets(symbol: str) -> tuple[str, str]:
    base, _, rest = symbol.partition("/")
    return base, rest.split(":")[0]


def settle_final(account: Account, order: Order) -> None:
    """An order reached a final state: nothing stays reserved for it."""
    if order.status in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.FAILED,
                        OrderStatus.EXPIRED):
        release_reservation(account, order)
