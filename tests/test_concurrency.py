"""Four processes place orders on one account at once: the account lock keeps
the limits exact and loses no order — on SQLite and on PostgreSQL. The same
run with the lock switched off (test-only switch) breaches the limit, so the
test is known to catch a missing lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from orders_helpers import paper_account

PROCESSES = 4
ORDERS_EACH = 6
LIMIT = Decimal("1000")  # 10 orders of 1 BTC at 100
RACE_WINDOW = "0.05"  # seconds between the risk check and the insert, with and without the lock


def run_workers(url: str, home: Path, *, lock: bool) -> list[dict]:
    env = {**os.environ, "TRADEGUARD_TEST_RACE_WINDOW": RACE_WINDOW, "TRADEGUARD_DISABLE_PLUGINS": "1"}
    env.pop("TRADEGUARD_TEST_DISABLE_ACCOUNT_LOCK", None)
    if not lock:
        env["TRADEGUARD_TEST_DISABLE_ACCOUNT_LOCK"] = "1"
    barrier = home / f"barrier-{'lock' if lock else 'nolock'}"
    barrier.mkdir()
    helper = Path(__file__).parent / "orders_helpers.py"
    procs = [subprocess.Popen([sys.executable, str(helper), url, str(home), "shared", str(ORDERS_EACH), str(barrier)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
             for _ in range(PROCESSES)]
    deadline = time.time() + 90  # every process imported and connected before the first order
    while len(list(barrier.glob("ready-*"))) < PROCESSES and time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            break  # a worker died: its stderr is reported below
        time.sleep(0.01)
    (barrier / "go").touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.extend(json.loads(out.strip().splitlines()[-1]))
    return results


def check(engine, results, *, expect_exact: bool) -> int:
    from tradeguard.storage import use_database
    from tradeguard.storage.models import Order

    with use_database(engine.db):
        orders = list(Order.select().where(Order.account == engine.accounts.get("shared").id))
    assert len(results) == PROCESSES * ORDERS_EACH
    accepted = [o for o in orders if o.status.value != "REJECTED"]
    if not expect_exact:
        return len(accepted)
    assert not [r for r in results if r["status"] == "ERROR"], results
    assert len(orders) == PROCESSES * ORDERS_EACH, "an order was lost or duplicated"
    assert sorted(r["id"] for r in results) == sorted(o.id for o in orders)
    exposure = sum((o.quantity * o.price for o in accepted), Decimal(0))
    assert exposure <= LIMIT
    assert len(accepted) == int(LIMIT / 100), "the limit must be used exactly, not under-filled"
    return len(accepted)


def _setup(engine):
    paper_account(engine, "shared", price="100", capital="1000000", max_position_size=str(LIMIT))
    engine.risk.set("shared", "order_rate_limit", {"max_orders_per_minute": "1000"})


@pytest.mark.timeout(300)
def test_four_processes_cannot_jointly_breach_a_limit(db_url, home):
    from tradeguard import Engine

    with Engine.open(db_url, home=home, load_entrypoints=False) as engine:
        _setup(engine)
        results = run_workers(db_url, home, lock=True)
        check(engine, results, expect_exact=True)


@pytest.mark.timeout(300)
def test_without_the_lock_the_same_run_breaches_the_limit(db_url, home):
    """The test-only switch proves the test above has teeth."""
    from tradeguard import Engine

    with Engine.open(db_url, home=home, load_entrypoints=False) as engine:
        _setup(engine)
        results = run_workers(db_url, home, lock=False)
        accepted = check(engine, results, expect_exact=False)
        assert accepted > int(LIMIT / 100), (f"expected a breach without the lock, {accepted} orders accepted",
                                             {r.get("error") for r in results})
