"""A small moving-average crossover bot for `tradeguard run`.

    tradeguard run examples/sma_bot.py --account main --interval 1

The bot itself ships inside tradeguard as `tradeguard.bots.sma` (so that
`tradeguard demo` works from an installed wheel); read it there. A bot is any
module with a ``tick(ctx)`` function: copy this file and write your own.
"""

from tradeguard.bots.sma import LONG, ORDER_VALUE, SHORT, SYMBOL, tick  # noqa: F401
