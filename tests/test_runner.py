"""`tradeguard run`: bots under the guard, leases, failures, signals; `tradeguard demo`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tradeguard import Engine
from tradeguard.clock import utcnow
from tradeguard.runner import LeaseHeld, Runner
from tradeguard.storage import use_database
from tradeguard.storage.models import Account, AuditLog, BotRun, Order, RunnerLease
from tradeguard.types import OrderStatus

BOTS = Path(__file__).parent / "bots" / "simple.py"


@pytest.fixture
def paper(engine):
    engine.accounts.add("bot", "paper", initial_capital="10000")
    return engine


def _orders(engine):
    with use_database(engine.db):
        return list(Order.select().order_by(Order.id))


def test_run_places_orders_through_the_guard_and_records_the_run(paper):
    lines: list[str] = []
    summary = Runner(paper, str(BOTS), "bot", interval=0, ticks=6, echo=lines.append).run()
    assert summary.ticks == 6 and summary.orders == 6 and summary.exit_reason == "completed"
    orders = _orders(paper)
    assert len(orders) == 6 and {o.run_id for o in orders} == {summary.run_id}
    assert all(o.status is OrderStatus.FILLED for o in orders)
    assert all(o.created_by == "bot:simple" for o in orders)
    with use_database(paper.db):
        run = BotRun.get_by_id(summary.run_id)
        assert (run.ticks, run.orders, run.exit_reason) == (6, 6, "completed") and run.stopped_at is not None
        assert RunnerLease.select().count() == 0
    assert sum(1 for line in lines if line.startswith("tick ")) == 6
    assert paper.audit.verify().ok


def test_refused_orders_are_counted_and_the_bot_carries_on(paper):
    summary = Runner(paper, f"{BOTS}:oversized", "bot", interval=0, ticks=3, echo=lambda _: None).run()
    assert summary.orders == 0 and summary.refused == 3 and summary.exit_reason == "completed"
    assert all(o.status is OrderStatus.REJECTED for o in _orders(paper))


def test_second_runner_is_refused_and_names_the_holder(paper):
    with use_database(paper.db):
        account = Account.get(Account.name == "bot")
        run = BotRun.create(account=account, bot="other", owner="host-a:4242")
        RunnerLease.create(account=account, owner="host-a:4242", run=run)
    with pytest.raises(LeaseHeld, match="host-a:4242"):
        Runner(paper, str(BOTS), "bot", interval=0, ticks=1, echo=lambda _: None).run()
    assert _orders(paper) == []


def test_stale_lease_is_taken_over_and_audited(paper):
    with use_database(paper.db):
        account = Account.get(Account.name == "bot")
        run = BotRun.create(account=account, bot="other", owner="host-a:4242")
        RunnerLease.create(account=account, owner="host-a:4242", run=run, heartbeat_at=utcnow() - timedelta(minutes=5))
    summary = Runner(paper, str(BOTS), "bot", interval=0, ticks=1, echo=lambda _: None,
                     lease_timeout=timedelta(seconds=60)).run()
    assert summary.ticks == 1
    with use_database(paper.db):
        takeover = AuditLog.get(AuditLog.action == "runner.lease_takeover")
        assert "host-a:4242" in takeover.payload
        assert BotRun.get_by_id(run.id).exit_reason == "lease taken over"


def test_three_consecutive_failures_put_the_account_in_reducing(paper):
    lines: list[str] = []
    summary = Runner(paper, f"{BOTS}:broken", "bot", interval=0, ticks=3, echo=lines.append).run()
    assert summary.errors == 3
    assert any("RuntimeError: the bot has a bug" in line for line in lines)
    assert paper.accounts.get("bot").trading_state.value == "REDUCING"


def test_on_error_stop_ends_the_run(paper):
    summary = Runner(paper, f"{BOTS}:broken", "bot", interval=0, ticks=5, on_error="stop", echo=lambda _: None).run()
    assert summary.ticks == 1 and summary.exit_reason == "bot error"
    assert paper.accounts.get("bot").trading_state.value == "ACTIVE"


@pytest.mark.parametrize("spec, message", [
    ("no/such/bot.py", "does not exist"),
    ("tests_no_such_module_xyz", "cannot load bot"),
    (f"{BOTS}:nope", "has no function 'nope'"),
])
def test_bad_bot_spec_is_bad_input(sqlite_cli, spec, message):
    sqlite_cli.json("account", "add", "bot", "--exchange", "paper")
    result = sqlite_cli("run", spec, "--account", "bot", "--ticks", "1")
    assert result.exit_code == 2 and message in result.stderr


def test_cli_run_prints_a_line_per_tick_and_a_summary(sqlite_cli):
    sqlite_cli.json("account", "add", "bot", "--exchange", "paper", "--initial-capital", "10000")
    result = sqlite_cli("run", str(BOTS), "--account", "bot", "--ticks", "3", "--interval", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("tick ") == 3 and "3 ticks, 3 orders" in result.stdout
    data = sqlite_cli.json("run", str(BOTS), "--account", "bot", "--ticks", "2", "--interval", "0")
    assert data["ticks"] == 2 and data["exit_reason"] == "completed"
    assert sqlite_cli("run", str(BOTS), "--account", "bot", "--backup-every", "soon").exit_code == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_tick_finishes_the_tick_and_exits_0(tmp_path, signum):
    home = tmp_path / "home"
    marker = tmp_path / "ticks"
    env = {**os.environ, "TRADEGUARD_HOME": str(home), "TRADEGUARD_DISABLE_PLUGINS": "1",
           "TG_TEST_TICK_MARKER": str(marker)}
    env.pop("TRADEGUARD_DATABASE_URL", None)
    exe = [sys.executable, "-m", "tradeguard.cli"]
    subprocess.run(exe + ["account", "add", "bot", "--exchange", "paper", "--initial-capital", "10000"],
                   env=env, check=True, capture_output=True)
    proc = subprocess.Popen(exe + ["run", f"{BOTS}:slow", "--account", "bot", "--interval", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)  # lands during the 0.3 s sleep between the tick's two orders
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"stopped: {signal.Signals(signum).name}" in out
    with Engine.open(f"sqlite:///{home / 'tradeguard.db'}", home=home, load_entrypoints=False) as engine:
        orders = _orders(engine)
        ticks = int(marker.read_text().split()[-1])
        assert len(orders) == 2 * ticks  # the interrupted tick placed both of its orders
        assert all(o.status is OrderStatus.FILLED for o in orders)
        with use_database(engine.db):
            assert RunnerLease.select().count() == 0
        assert engine.audit.verify().ok


def test_demo_runs_in_a_throwaway_home(sqlite_cli):
    started = time.monotonic()
    data = sqlite_cli.json("demo", "--ticks", "120")
    assert time.monotonic() - started < 60
    assert data["ticks"] == 120 and data["orders"] == data["fills"] > 0
    assert data["audit"].startswith("ok: ")
    assert Path(data["home"]).exists() and not Path(data["home"]).samefile(sqlite_cli.home)


def test_scheduled_backups_run_beside_trading(tmp_path):
    home = tmp_path / "home"
    with Engine.open(f"sqlite:///{tmp_path / 'b.db'}", home=home, load_entrypoints=False,
                     master_key="runner backup passphrase") as engine:
        engine.accounts.add("bot", "paper", initial_capital="10000")
        lines: list[str] = []
        summary = Runner(engine, str(BOTS), "bot", interval=0.2, ticks=8, echo=lines.append,
                         backup_every=timedelta(seconds=1), keep_backups=1).run()
        assert summary.orders == 8
        created = [line for line in lines if line.startswith("backup ") and line.endswith(" created")]
        assert created, lines
        listed = engine.backups.list()
        assert len([b for b in listed if b.get("status", "ok") != "incomplete"]) == 1  # pruned to keep_backups
