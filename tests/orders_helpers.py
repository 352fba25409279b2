"""Helpers for the order-path tests: a paper account with a fixed price, and
the worker process of the concurrency test (``python orders_helpers.py``)."""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def paper_account(engine: Any, name: str = "p", *, price: str = "100", capital: str = "100000",
                  symbol: str = "BTC/USDT", **limits: Any) -> Any:
    """A PAPER account on the paper venue with *capital* USDT and *symbol* fixed at *price*; returns the venue."""
    limits.setdefault("max_position_size", "1000000")
    engine.accounts.add(name, "paper", initial_capital=capital, **limits)
    venue = engine.orders.venues.for_account(engine.accounts.get(name))
    venue.set_price(symbol, price)
    engine.orders.retry_backoff = 0
    engine.trading.cancel_backoff = 0
    return venue


def worker(url: str, home: str, account: str, count: int, barrier: str) -> None:
    """Place *count* limit buys of 1 BTC at 100 once *barrier*/go exists; print what happened as JSON."""
    from tradeguard import Engine
    from tradeguard.errors import RiskRejected

    results = []
    with Engine.open(url, home=home, load_entrypoints=False, reconcile=False) as engine:
        Path(barrier, f"ready-{os.getpid()}").touch()
        deadline = time.time() + 120
        while not Path(barrier, "go").exists() and time.time() < deadline:
            time.sleep(0.002)
        for _ in range(count):
            try:
                order = engine.place_order(account, "BTC/USDT", "buy", "1", type="limit", price="100",
                                           actor=f"worker-{os.getpid()}")
                results.append({"id": order.id, "status": order.status.value})
            except RiskRejected as exc:
                results.append({"id": exc.order_id, "status": "REJECTED"})
            except Exception as exc:  # only expected with the lock switched off (lost updates)
                results.append({"id": None, "status": "ERROR", "error": f"{type(exc).__name__}: {exc}"[:300]})
    print(json.dumps(results))


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
