"""Turn ccxt's unified structures into tradeguard's value types.

The adapter runs ccxt in *string mode* (``exchange.number = str``): ccxt then
hands back every amount, price and fee as the decimal string the venue sent
(or ccxt's exact string arithmetic on it), never a binary float. `dec` turns
those strings into `Decimal`. It also accepts a float -- a few ccxt code paths
compute numbers outside string mode -- and converts it with ``Decimal(str(x))``
(the shortest repr that round-trips), the one place a float may cross the
boundary; a float never becomes money anywhere else.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from tradeguard.errors import VenueError
from tradeguard.types import (
    Balance,
    Fill,
    Market,
    MarketKind,
    OrderStatus,
    Side,
    Ticker,
    VenueOrder,
    VenuePosition,
)

ZERO = Decimal(0)

#: ccxt's unified order status -> tradeguard's (``open`` is refined by the filled amount).
STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def dec(value: Any) -> Decimal | None:
    """A Decimal from ccxt's string (or, at worst, float) number; None for missing/empty."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        value = str(value)  # the documented float boundary: shortest round-trip repr
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise VenueError(f"the venue sent a number tradeguard cannot read: {value!r}") from None
    if not result.is_finite():
        raise VenueError(f"the venue sent a non-finite number: {value!r}")
    return result


def dec0(value: Any) -> Decimal:
    """Like `dec`, with 0 for missing."""
    result = dec(value)
    return ZERO if result is None else result


def ms_to_datetime(value: Any) -> datetime | None:
    """A UTC datetime from ccxt's millisecond timestamp."""
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(Decimal(str(value))) / 1000, tz=timezone.utc)


def market_from_ccxt(market: Mapping[str, Any]) -> Market:
    """A `Market` from a ccxt market (precisionMode TICK_SIZE: precision *is* the step)."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    if market.get("swap") or market.get("future"):
        kind = MarketKind.FUTURES
    elif market.get("margin") and not market.get("spot"):
        kind = MarketKind.MARGIN
    else:
        kind = MarketKind.SPOT
    min_amount = dec((limits.get("amount") or {}).get("min"))
    min_notional = dec((limits.get("cost") or {}).get("min"))
    return Market(
        symbol=market["symbol"],
        base=market["base"],
        quote=market["quote"],
        kind=kind,
        amount_step=_positive_or_none(precision.get("amount")),
        price_step=_positive_or_none(precision.get("price")),
        min_amount=min_amount if min_amount else None,
        min_notional=min_notional if min_notional else None,
        active=market.get("active") is not False,
    )


def ticker_from_ccxt(ticker: Mapping[str, Any]) -> Ticker:
    bid, ask = dec(ticker.get("bid")), dec(ticker.get("ask"))
    last = dec(ticker.get("last")) or dec(ticker.get("close"))
    if last is None and bid and ask:
        last = (bid + ask) / 2
    if last is None:
        raise VenueError(f"the venue sent no price for {ticker.get('symbol')}")
    stamp = ms_to_datetime(ticker.get("timestamp")) or datetime.now(timezone.utc)
    return Ticker(symbol=ticker["symbol"], bid=bid, ask=ask, last=last, timestamp=stamp)


def balances_from_ccxt(balance: Mapping[str, Any]) -> list[Balance]:
    """Non-zero holdings, sorted by asset."""
    out = []
    totals = balance.get("total") or {}
    for asset in sorted(totals):
        entry = balance.get(asset) or {}
        total = dec0(entry.get("total", totals.get(asset)))
        free = dec(entry.get("free"))
        used = dec(entry.get("used"))
        if free is None and used is None:
            free, used = total, ZERO
        elif free is None:
            free = total - used
        elif used is None:
            used = max(total - free, ZERO)
        if total == 0 and free == 0 and used == 0:
            continue
        out.append(Balance(asset=asset, free=free, used=used, total=total))
    return out


def fee_of(entry: Mapping[str, Any]) -> tuple[Decimal, str | None, Decimal | None]:
    """(cost, currency, rate) summed over ccxt's ``fees`` (or the single ``fee``).

    Fees in several currencies keep the first currency's sum (the others are
    rare: Binance charges one asset per fill).
    """
    fees = [f for f in (entry.get("fees") or []) if f and f.get("cost") not in (None, "")]
    if not fees and entry.get("fee") and entry["fee"].get("cost") not in (None, ""):
        fees = [entry["fee"]]
    if not fees:
        return ZERO, None, None
    currency = fees[0].get("currency")
    cost = sum((dec0(f.get("cost")) for f in fees if f.get("currency") == currency), ZERO)
    rate = dec(fees[0].get("rate"))
    return abs(cost), currency, rate


def fill_from_ccxt(trade: Mapping[str, Any], *, symbol: str | None = None, side: Any = None,
                   order_id: str | None = None, client_order_id: str | None = None,
                   timestamp: datetime | None = None, base: str | None = None, quote: str | None = None) -> Fill:
    """A `Fill` from a ccxt trade; missing fields (order-embedded fills) come from the order."""
    price = dec(trade.get("price"))
    amount = dec(trade.get("amount"))
    fee, fee_currency, rate = fee_of(trade)
    sym = trade.get("symbol") or symbol
    if rate is None and fee and fee_currency and sym and "/" in sym:
        b, q = base or sym.split("/")[0], quote or sym.split("/")[1].split(":")[0]
        cost = dec(trade.get("cost")) or (price * amount if price and amount else None)
        if fee_currency == q and cost:
            rate = fee / cost
        elif fee_currency == b and amount:
            rate = fee / amount
    taker = trade.get("takerOrMaker")
    return Fill(
        trade_id=str(trade["id"]),
        symbol=sym,
        side=trade.get("side") or side,
        price=price,
        quantity=amount,
        timestamp=ms_to_datetime(trade.get("timestamp")) or timestamp or datetime.now(timezone.utc),
        exchange_order_id=str(trade.get("order") or order_id) if (trade.get("order") or order_id) else None,
        client_order_id=client_order_id,
        fee=fee,
        fee_currency=fee_currency,
        fee_rate=None if rate is None else rate.normalize(),
        taker=taker != "maker",
    )


def order_from_ccxt(order: Mapping[str, Any], *, fallback: Mapping[str, Any] | None = None) -> VenueOrder:
    """A `VenueOrder` from a ccxt order. *fallback* fills what a terse answer lacks
    (Coinbase's create returns only ids): symbol, side, type, quantity, price."""
    fb = dict(fallback or {})
    info = order.get("info") or {}
    quantity = dec(order.get("amount"))
    if quantity is None:
        quantity = dec0(fb.get("quantity"))
    filled = dec(order.get("filled")) or ZERO
    if quantity and filled > quantity:  # rounding noise on venue side; never trust more than asked
        filled = quantity
    status = STATUS.get(str(order.get("status") or "").lower())
    if status is None:
        status = fb.get("status", OrderStatus.OPEN)
    if status is OrderStatus.OPEN and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    side = order.get("side") or fb.get("side")
    type_ = order.get("type") or fb.get("type") or "limit"
    if type_ not in ("market", "limit"):
        type_ = "limit"
    stamp = ms_to_datetime(order.get("timestamp"))
    symbol = order.get("symbol") or fb.get("symbol")
    # a Binance cancel answer's clientOrderId is the cancel request's own id; the order's is origClientOrderId
    client_id = info.get("origClientOrderId") or order.get("clientOrderId") or fb.get("client_order_id")
    fills = tuple(
        fill_from_ccxt(t, symbol=symbol, side=side, order_id=order.get("id"), client_order_id=client_id, timestamp=stamp)
        for t in (order.get("trades") or [])
        if t.get("id") not in (None, "") and dec(t.get("amount"))
    )
    fee, fee_currency, _ = fee_of(order)
    if not fee and fills:
        fee, fee_currency = sum((f.fee for f in fills), ZERO), fills[0].fee_currency
    return VenueOrder(
        client_order_id=client_id,
        exchange_order_id=None if order.get("id") is None else str(order["id"]),
        symbol=symbol,
        side=side,
        type=type_,
        quantity=quantity,
        status=status,
        price=dec(order.get("price")) if type_ == "limit" else dec(order.get("price")) or fb.get("price"),
        filled=filled,
        average_price=dec(order.get("average")) or (dec(order.get("price")) if filled and type_ == "market" else None),
        fee=fee,
        fee_currency=fee_currency,
        exchange_status=str(info.get("status") or order.get("status") or "") or None,
        fills=fills,
        timestamp=stamp,
    )


def position_from_ccxt(position: Mapping[str, Any]) -> VenuePosition | None:
    """A `VenuePosition` from a ccxt position; None for a flat one."""
    contracts = dec(position.get("contracts"))
    size = contracts * (dec(position.get("contractSize")) or Decimal(1)) if contracts is not None else None
    if not size:
        return None
    side = Side.SELL if str(position.get("side")).lower() == "short" else Side.BUY
    return VenuePosition(
        symbol=position["symbol"],
        side=side,
        quantity=abs(size),
        entry_price=dec0(position.get("entryPrice")),
        leverage=dec(position.get("leverage")) or Decimal(1),
        unrealized_pnl=dec0(position.get("unrealizedPnl")),
    )


def _positive_or_none(value: Any) -> Decimal | None:
    number = dec(value)
    return number.normalize() if number and number > 0 else None


__all__ = [
    "STATUS",
    "balances_from_ccxt",
    "dec",
    "dec0",
    "fee_of",
    "fill_from_ccxt",
    "market_from_ccxt",
    "ms_to_datetime",
    "order_from_ccxt",
    "position_from_ccxt",
    "ticker_from_ccxt",
]
