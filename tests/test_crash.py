"""SIGKILL at random moments never loses an order nor sends one twice.

The venue (tests/venue_server.py) runs in its own process and counts every
submission by client order id; the worker placing orders is killed with
SIGKILL several times; after each kill an Engine opens (which reconciles) and
the test checks the database against the venue.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from loopback_venue import LoopbackPlugin
from tradeguard import Engine
from tradeguard.orders import service as order_service
from tradeguard.storage import use_database
from tradeguard.storage.models import Order, Trade
from tradeguard.types import OrderStatus

HERE = Path(__file__).parent
UNKNOWN = {OrderStatus.PENDING_SUBMIT}


@pytest.fixture
def venue(tmp_path):
    port_file = tmp_path / "venue.port"
    proc = subprocess.Popen([sys.executable, str(HERE / "venue_server.py"), "--port-file", str(port_file)])
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "venue server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _venue_stats(url):
    import json
    import urllib.request

    with urllib.request.urlopen(url + "/stats", timeout=5) as response:
        return json.loads(response.read())


def _inject(url, client_order_id):
    import json
    import urllib.request

    body = json.dumps({"client_order_id": client_order_id, "symbol": "BTC/USDT", "side": "buy", "type": "market",
                       "quantity": "0.002"}).encode()
    request = urllib.request.Request(url + "/inject", data=body, method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


@pytest.mark.slow
def test_sigkill_loop_loses_nothing_and_sends_nothing_twice(tmp_path, venue, monkeypatch):
    # After a kill the dead worker's in-flight order is certainly not in flight: reconcile it at once
    # (in production a 60 s grace protects orders that another live process may still be sending).
    monkeypatch.setattr(order_service, "RECONCILE_GRACE", timedelta(0))
    home = tmp_path / "home"
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    with Engine.open(db_url, home=home, plugins=[LoopbackPlugin()], load_entrypoints=False) as engine:
        engine.accounts.add("crash", "loopback", mode="live", initial_capital="1000000",
                            max_position_size="1000000", max_open_positions="100")
        engine.accounts.set("crash", api_base_url=venue, trading_enabled=True, require_confirmation=False)
        engine.risk.disable("crash", "order_rate_limit")
    rng = random.Random(20261122)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, str(HERE / "crash_worker.py"), db_url, str(home), "crash"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # Let it place a few orders, then kill it at a random moment within an order.
        for _ in range(rng.randint(3, 12)):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()

        if round_ == 2:  # an order placed at the venue by hand, which the database lacks
            _inject(venue, f"manual-{round_}")

        with Engine.open(db_url, home=home, plugins=[LoopbackPlugin()], load_entrypoints=False) as engine:
            # Engine.open reconciled the orders left open; a runner also syncs the account at
            # start, which imports (and flags) what the venue has and the database lacks.
            engine.sync("crash")
            stats = _venue_stats(venue)
            with use_database(engine.db):
                orders = list(Order.select())
            unknown = [o for o in orders if o.status in UNKNOWN]
            assert unknown == [], [(o.id, o.status) for o in unknown]
            assert all(count == 1 for count in stats["submissions"].values()), stats["submissions"]
            manual = {o["client_order_id"]: o["id"] for o in stats["orders"] if o["client_order_id"].startswith("manual-")}
            venue_ids = {o["client_order_id"] for o in stats["orders"]} - set(manual)
            db_ids = {o.client_order_id for o in orders}
            assert venue_ids <= db_ids  # every order the venue has is in the database (imported if need be)
            for order in orders:
                if order.imported:
                    assert order.client_order_id in manual and order.status is OrderStatus.FILLED
                elif order.client_order_id in venue_ids:
                    assert order.status is OrderStatus.FILLED
                else:
                    assert order.status is OrderStatus.FAILED, (order.client_order_id, order.imported, order.created_by,
                                                                order.exchange_order_id, order.error_message)
            with use_database(engine.db):
                imported = {t.exchange_trade_id for t in Trade.select().where(Trade.imported == True)}  # noqa: E712
            assert imported == {f"T{oid}" for oid in manual.values()}  # the hand-placed fill, imported once
            assert engine.audit.verify().ok
