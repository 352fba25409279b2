"""A small bot that embeds tradeguard's Engine (no CLI, no runner).

    python examples/embedded_bot.py --ticks 40

It opens the installation in ``$TRADEGUARD_HOME`` (or ``--home``), creates a
PAPER account on the paper exchange the first time, and every tick moves the
paper price one step, reads it, and trades a simple mean-reversion rule:
buy a slice when the price is below its recent average, sell everything when
it is above. Every order goes through the guard — risk rules, the durable
order record, the audit trail; a refused order raises `OrderNotSent` and the
bot carries on. At the end it prints its positions, a performance summary and
a replay check of the books against the fills.

Switching this bot to a real venue is a matter of the account (``exchange``,
``mode="live"``, credentials), not of the code: see docs/quickstart.md.
"""

from __future__ import annotations

import argparse
from collections import deque
from decimal import Decimal
from typing import Any

from tradeguard import Engine, OrderNotSent

SYMBOL = "BTC/USDT"
WINDOW = 8
SLICE = Decimal("0.002")  # BTC per buy
MAX_HELD = Decimal("0.01")


def held(engine: Engine, account: str) -> Decimal:
    """The quantity of SYMBOL tradeguard records for *account*."""
    for position in engine.reports.positions(account):
        if position["symbol"] == SYMBOL:
            return position["quantity"]
    return Decimal(0)


def run(home: str | None, ticks: int, account: str = "embedded") -> dict[str, Any]:
    """Trade *ticks* ticks on the paper exchange; return what happened."""
    placed, refused = 0, 0
    with Engine.open(home=home) as engine:
        if account not in {a.name for a in engine.accounts.list()}:
            engine.accounts.add(account, "paper", initial_capital="10000", max_position_size="2000")
        venue = engine.exchange_for(account)
        prices: deque[Decimal] = deque(maxlen=WINDOW)
        for tick in range(ticks):
            venue.advance()  # the paper exchange's random walk moves one step
            price = venue.fetch_ticker(SYMBOL).last
            prices.append(price)
            average = sum(prices) / len(prices)
            quantity = held(engine, account)
            if tick == 0 or (price < average and quantity + SLICE <= MAX_HELD):
                side, size, why = "buy", SLICE, f"price {price} below average {average:.2f}"
            elif price > average and quantity > 0:
                side, size, why = "sell", quantity, f"price {price} above average {average:.2f}"
            else:
                continue
            try:
                order = engine.place_order(account, SYMBOL, side, size, actor="bot:embedded", reason=why)
                placed += 1
                print(f"tick {tick}: {side} {size} {SYMBOL} -> {order.status.value} @ {order.average_fill_price}")
            except OrderNotSent as exc:  # a risk rule or the trading state refused it
                refused += 1
                print(f"tick {tick}: not sent: {exc}")
        summary = engine.reports.report(account).summary
        replay = engine.reports.replay(account)
        positions = engine.reports.positions(account)
    for position in positions:
        print(f"position {position['symbol']}: {position['quantity']} at average cost {position['average_cost']:.2f}")
    print(f"orders placed: {placed}, refused: {refused}")
    print(f"fills: {summary['trades']}, realized PnL {summary['realized_pnl']:.4f}, fees {summary['fees']:.4f}, "
          f"total PnL {summary['total_pnl']:.4f} {summary['quote_currency']}")
    print(f"replay: {'ok' if replay.ok else 'DIFFERENCES ' + str(replay.differences)}")
    return {"placed": placed, "refused": refused, "fills": summary["trades"], "replay_ok": replay.ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="tradeguard home (default: $TRADEGUARD_HOME or ~/.tradeguard)")
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--account", default="embedded")
    args = parser.parse_args()
    result = run(args.home, args.ticks, args.account)
    raise SystemExit(0 if result["replay_ok"] else 4)


if __name__ == "__main__":
    main()
