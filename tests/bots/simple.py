"""Bots used by the runner tests (loaded by file path, as users load theirs)."""

import os
import time
from decimal import Decimal


def tick(ctx):
    """Buy a little BTC every tick; sell it back every third tick."""
    price = ctx.price("BTC/USDT")
    ctx.state["status"] = f"BTC/USDT {price}"
    if ctx.tick % 3 == 0 and ctx.position("BTC/USDT") > 0:
        ctx.sell("BTC/USDT", ctx.position("BTC/USDT"))
    else:
        ctx.buy("BTC/USDT", Decimal("0.001"))


def slow(ctx):
    """Place an order, then dawdle, so a signal lands mid-tick."""
    ctx.buy("BTC/USDT", Decimal("0.001"))
    marker = os.environ.get("TG_TEST_TICK_MARKER")
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{ctx.tick}\n")
    time.sleep(0.3)
    ctx.buy("BTC/USDT", Decimal("0.001"))


def broken(ctx):
    raise RuntimeError("the bot has a bug")


def oversized(ctx):
    """Asks for far more than the account's max position size."""
    ctx.buy("BTC/USDT", Decimal("5"))
