"""A small moving-average crossover bot (the bot `tradeguard demo` runs).

    tradeguard run tradeguard.bots.sma --account main --interval 1

Every tick it reads the price, keeps a short and a long simple moving average
in ``ctx.state``, buys when the short average crosses above the long one and
sells its position when it crosses below. Every order goes through the guard:
if a risk rule refuses it, ``ctx.buy`` returns None and the bot carries on.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

SYMBOL = "BTC/USDT"
SHORT, LONG = 5, 20
ORDER_VALUE = Decimal("200")  # quote currency per entry


def tick(ctx):
    prices = ctx.state.setdefault("prices", deque(maxlen=LONG))
    price = ctx.price(SYMBOL)
    prices.append(price)
    if len(prices) < LONG:
        ctx.state["status"] = f"{SYMBOL} {price} warming up ({len(prices)}/{LONG})"
        return
    short = sum(list(prices)[-SHORT:]) / SHORT
    long_ = sum(prices) / LONG
    above = short > long_
    was_above = ctx.state.get("above")
    ctx.state["above"] = above
    held = ctx.position(SYMBOL)
    ctx.state["status"] = f"{SYMBOL} {price:.2f} sma{SHORT} {short:.2f} sma{LONG} {long_:.2f} held {held}"
    if was_above is None or above == was_above:
        return
    if above and held <= 0:
        quantity = (ORDER_VALUE / price).quantize(Decimal("0.00001"))
        ctx.buy(SYMBOL, quantity)
    elif not above and held > 0:
        ctx.sell(SYMBOL, held)
