"""`engine.sync` / `tradeguard sync`: the venue is the source of truth.

Accounts are real LIVE Binance accounts with credentials in the vault; their
adapters run the real ccxt.binance on recorded responses (ReplayTransport)
or, for the CLI, against a stub Binance on loopback HTTP (``api_base_url``).
"""

from __future__ import annotations

import base64
import time
from decimal import Decimal
from typing import Any

import pytest

import ccxt_replay as cr
import ccxt_venue_helpers as h
from binance_stub import StubBinance
from tradeguard import Engine
from tradeguard.hookspecs import hookimpl
from tradeguard.plugins.ccxt_venue import clear_market_cache
from tradeguard.valuation import clear_price_cache
from tradeguard.storage.models import Account, BalanceSnapshot, CashFlow, Order, SyncLog, Trade
from tradeguard.types import OrderStatus

MASTER_KEY = "base64:" + base64.b64encode(b"k" * 32).decode()


class SyncEvents:
    """A test plugin that records on_sync_finished."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    @hookimpl
    def on_sync_finished(self, account: str, result: Any) -> None:
        self.events.append((account, result))


@pytest.fixture(autouse=True)
def fresh_market_cache():
    clear_market_cache()
    clear_price_cache()
    yield
    clear_market_cache()
    clear_price_cache()


def open_engine(url: str, home: Any, *plugins: Any) -> Engine:
    return Engine.open(url, home=home, master_key=MASTER_KEY, load_entrypoints=False, plugins=list(plugins))


def add_binance(engine: Engine, name: str, *, api_key: str = "test-binance-api-key", **settings: Any) -> None:
    engine.accounts.add(name, "binance", mode="live", mainnet=True, settings=settings or None)
    engine.vault.set_credentials(name, {"api_key": api_key, "api_secret": "test-binance-secret"})


def account_body(**totals: str) -> dict:
    """Binance's account answer with the given free balances (nothing locked)."""
    body = cr.load_body("binance", "account")
    body["balances"] = [{"asset": a, "free": v, "locked": "0.00000000"} for a, v in totals.items()]
    return body


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- #
# one account
# --------------------------------------------------------------------------- #


def test_sync_imports_what_the_venue_has_and_records_balances(db_url, home):
    events = SyncEvents()
    with open_engine(db_url, home, events) as engine:
        add_binance(engine, "main")
        t = h.install(engine, "main", "binance")
        t.add("GET", r"^/api/v3/myTrades$", body=[], query={"symbol": "ETHUSDT"})

        [result] = engine.sync("main")

        assert result.ok, result.error
        # the open order placed by hand on the venue's website: imported and flagged
        hand = Order.get(Order.client_order_id == "tg-limit-1")
        assert hand.imported and hand.status is OrderStatus.OPEN and hand.exchange_order_id == "28457300"
        # a filled order the database lacks, found through its fills: imported with its fills
        filled = Order.get(Order.exchange_order_id == "28457211")
        assert filled.imported and filled.status is OrderStatus.FILLED and filled.filled_quantity == Decimal("0.002")
        trades = list(Trade.select().where(Trade.order == filled.id).order_by(Trade.exchange_trade_id))
        assert [t_.exchange_trade_id for t_ in trades] == ["3479476927", "3479476928"]
        first = trades[0]
        assert first.imported and first.fee == Decimal("0.0000015") and first.fee_currency == "BTC"
        assert first.fee_rate == Decimal("0.001")
        assert first.usd_value == Decimal("73369.84") * Decimal("0.0015")  # USDT quote: the notional
        assert (result.imported_orders, result.imported_fills) == (2, 2)

        snapshots = {s.asset: s for s in BalanceSnapshot.select()}
        assert set(snapshots) == {"BTC", "ETH", "USDT"}
        assert snapshots["BTC"].free == Decimal("0.5") and snapshots["BTC"].used == Decimal("0.01")
        assert snapshots["BTC"].usd_value == Decimal("0.51") * Decimal("73369.84")
        account = Account.get(Account.name == "main")
        eth_last = Decimal(cr.load_body("binance", "ticker_24hr_ethusdt")["lastPrice"])
        expected_usd = Decimal("0.51") * Decimal("73369.84") + 2 * eth_last + Decimal("10250")
        assert account.real_balance_usd == expected_usd and Decimal(result.balance_usd) == expected_usd
        assert account.current_cash == Decimal("10250")  # LIVE: the venue's quote balance
        assert account.sync_status == "ok" and account.last_balance_sync is not None

        log = SyncLog.get()
        assert log.status == "ok" and log.sync_type == "full" and log.source == "api"
        assert log.balance_before == {} and log.balance_after == {"BTC": "0.51", "ETH": "2", "USDT": "10250"}
        assert log.positions_before == {} and log.positions_after["BTC/USDT"] == "0.001998"
        assert log.api_calls == result.api_calls == len(t.requests) and log.duration_ms >= 0
        assert events.events and events.events[0][0] == "main"
        assert events.events[0][1]["status"] == "ok" and events.events[0][1]["id"] == log.id

        # the same venue state again (the open order still untouched): nothing new is imported
        t.clear()
        t.add("GET", r"^/api/v3/order$", body=cr.load_body("binance", "open_orders")[0], query={"orderId": "28457300"})
        [again] = engine.sync("main")
        assert again.ok and (again.imported_orders, again.imported_fills) == (0, 0)
        assert Trade.select().count() == 2 and Order.select().count() == 2


def test_deposits_from_history_and_unexplained_changes_become_cash_flows(tmp_path, home):
    with open_engine(f"sqlite:///{tmp_path / 'tg.db'}", home) as engine:
        add_binance(engine, "main")
        t = h.install(engine, "main", "binance")
        t.add("GET", r"^/api/v3/openOrders$", body=[])
        t.add("GET", r"^/api/v3/myTrades$", body=[])
        t.add("GET", r"^/api/v3/account$", body=account_body(BTC="0.51", ETH="2", USDT="10250"))
        [baseline] = engine.sync("main")
        assert baseline.ok and CashFlow.select().count() == 0  # the first sync is the baseline

        # meanwhile: 0.5 BTC deposited, a fill bought 0.0015 BTC, and 100 USDT left without a trace
        stamp = now_ms()
        trade = cr.load_body("binance", "my_trades")[0] | {"time": stamp}
        t.add("GET", r"^/api/v3/myTrades$", body=[trade], query={"symbol": "BTCUSDT"})
        t.add("GET", r"^/sapi/v1/capital/deposit/hisrec$", body=[{
            "id": "dep-1", "amount": "0.5", "coin": "BTC", "network": "BTC", "status": 1, "address": "bc1qexample",
            "txId": "f00d", "insertTime": stamp, "transferType": 0, "confirmTimes": "2/2"}])
        t.add("GET", r"^/sapi/v1/capital/withdraw/history$", body=[])
        btc = Decimal("0.51") + Decimal("0.5") + Decimal("0.0015") - Decimal("0.0000015")
        usdt = Decimal("10250") - Decimal("73369.84") * Decimal("0.0015") - Decimal("100")
        t.add("GET", r"^/api/v3/account$", body=account_body(BTC=str(btc), ETH="2", USDT=str(usdt)))

        [result] = engine.sync("main")

        assert result.ok, result.error
        assert not result.notes, result.notes
        flows = {(f.kind, f.asset): f for f in CashFlow.select()}
        assert set(flows) == {("DEPOSIT", "BTC"), ("UNEXPLAINED", "USDT")}
        deposit = flows[("DEPOSIT", "BTC")]
        assert deposit.amount == Decimal("0.5") and deposit.external_id == "deposit:dep-1" and deposit.source == "venue"
        lost = flows[("UNEXPLAINED", "USDT")]
        assert lost.amount == Decimal("100") and lost.note.startswith("out:") and lost.usd_value == Decimal("100")
        assert (result.cash_flows, result.unexplained) == (2, 1)
        assert Trade.get().imported and Order.get().imported

        # history is asked again only when a balance changed; a deposit is recorded once however often it repeats
        t.clear()
        [quiet] = engine.sync("main")
        assert quiet.ok and not t.find("GET", "/sapi/") and CashFlow.select().count() == 2
        # no balance moved: only the pair of a recent order is asked for fills, not every held asset's
        assert {r.params["symbol"] for r in t.find("GET", "/api/v3/myTrades")} == {"BTCUSDT"}
        t.add("GET", r"^/sapi/v1/capital/deposit/hisrec$", body=[
            {"id": "dep-1", "amount": "0.5", "coin": "BTC", "status": 1, "insertTime": stamp, "txId": "f00d"},
            {"id": "dep-2", "amount": "1", "coin": "ETH", "status": 1, "insertTime": now_ms(), "txId": "beef"}])
        t.add("GET", r"^/api/v3/account$", body=account_body(BTC=str(btc), ETH="3", USDT=str(usdt)))
        [third] = engine.sync("main")
        assert third.ok and (third.cash_flows, third.unexplained) == (1, 0)
        assert sorted(f.external_id for f in CashFlow.select().where(CashFlow.kind == "DEPOSIT")) == [
            "deposit:dep-1", "deposit:dep-2"]


def test_a_failed_sync_is_logged_and_leaves_balances_alone(tmp_path, home):
    events = SyncEvents()
    with open_engine(f"sqlite:///{tmp_path / 'tg.db'}", home, events) as engine:
        add_binance(engine, "main")
        t = h.install(engine, "main", "binance")
        t.add("GET", r"^/api/v3/account$", fixture="error_invalid_api_key")
        [result] = engine.sync("main")
        assert not result.ok and result.error_code == "CredentialsError"
        assert "tradeguard creds check main" in result.error and "test-binance-secret" not in result.error
        log = SyncLog.get()
        assert log.status == "failed" and log.error_code == "CredentialsError" and "creds check" in log.error_message
        assert log.balance_after is None and BalanceSnapshot.select().count() == 0
        assert Account.get().sync_status == "failed" and Account.get().real_balance_usd is None
        assert events.events[0][1]["status"] == "failed"


def test_sync_of_an_unknown_account_is_bad_input(sqlite_engine):
    from tradeguard.errors import NotFound

    with pytest.raises(NotFound):
        sqlite_engine.sync("nope")
    assert SyncLog.select().count() == 0


# --------------------------------------------------------------------------- #
# many accounts, the CLI
# --------------------------------------------------------------------------- #


@pytest.fixture
def stub():
    server = StubBinance(latency=0.05)
    url = server.start()
    yield server, url
    server.stop()


def test_sync_all_is_concurrent_and_one_failure_does_not_stop_the_others(tmp_path, home, stub):
    server, url = stub
    with open_engine(f"sqlite:///{tmp_path / 'tg.db'}", home) as engine:
        for name in ("a1", "a2", "a3", "a4"):
            add_binance(engine, name, api_key="bad-key" if name == "a2" else "test-binance-api-key", rate_limit="false")
            engine.accounts.set(name, api_base_url=url)
        results = engine.sync(concurrency=4)
        assert [r.account for r in results] == ["a1", "a2", "a3", "a4"]
        assert [r.ok for r in results] == [True, False, True, True]
        assert "account a2" in results[1].error and "creds check a2" in results[1].error
        assert {row.status for row in SyncLog.select()} == {"ok", "failed"} and SyncLog.select().count() == 4
        assert BalanceSnapshot.select().where(BalanceSnapshot.asset == "BTC").count() == 3  # one per ok account
        assert server.max_in_flight > 1  # the accounts' requests overlapped


def test_cli_sync_all_exits_1_after_syncing_the_rest(tmp_path, home, stub):
    from click.testing import CliRunner

    from tradeguard.cli import cli

    server, url = stub
    db = tmp_path / "tg.db"
    with open_engine(f"sqlite:///{db}", home) as engine:
        for name in ("good", "broken"):
            add_binance(engine, name, api_key="bad-key" if name == "broken" else "test-binance-api-key", rate_limit="false")
            engine.accounts.set(name, api_base_url=url)
    env = {"TRADEGUARD_HOME": str(home), "TRADEGUARD_DATABASE_URL": f"sqlite:///{db}",
           "TRADEGUARD_MASTER_KEY": MASTER_KEY, "TRADEGUARD_DISABLE_PLUGINS": "1"}
    runner = CliRunner()
    result = runner.invoke(cli, ["sync", "--all"], env=env)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("good: ok, 3 balances") for line in lines), lines
    assert any(line.startswith("broken: FAILED") and "creds check broken" in line for line in lines), lines
    assert "synced 1 of 2 accounts; failed: broken" in result.stdout
    assert "error: sync failed for 1 account(s): broken" in result.stderr

    data = runner.invoke(cli, ["sync", "good", "--json"], env=env)
    assert data.exit_code == 0, data.output
    import json

    [entry] = json.loads(data.stdout)
    assert entry["account"] == "good" and entry["status"] == "ok"
    assert entry["api_calls"] == 2  # balances unchanged: account + open orders, no per-symbol trade queries

    usage = runner.invoke(cli, ["sync"], env=env)
    assert usage.exit_code == 2 and "give one ACCOUNT or --all" in usage.stderr
    unknown = runner.invoke(cli, ["sync", "ghost"], env=env)
    assert unknown.exit_code == 2 and "ghost" in unknown.stderr
    with open_engine(f"sqlite:///{db}", home) as engine:
        assert [row["status"] for row in engine.syncer.logs("good")] == ["ok", "ok"]


def test_cli_sync_all_on_a_terminal_shows_progress(tmp_path, home, stub, monkeypatch):
    from click.testing import CliRunner

    import tradeguard.cli.sync as sync_cli
    from tradeguard.cli import cli

    server, url = stub
    db = tmp_path / "tg.db"
    with open_engine(f"sqlite:///{db}", home) as engine:
        for name in ("p1", "p2", "p3"):
            add_binance(engine, name, rate_limit="false")
            engine.accounts.set(name, api_base_url=url)
    monkeypatch.setattr(sync_cli, "stdout_is_tty", lambda: True)
    env = {"TRADEGUARD_HOME": str(home), "TRADEGUARD_DATABASE_URL": f"sqlite:///{db}",
           "TRADEGUARD_MASTER_KEY": MASTER_KEY, "TRADEGUARD_DISABLE_PLUGINS": "1", "COLUMNS": "120"}
    result = CliRunner().invoke(cli, ["sync", "--all"], env=env)
    assert result.exit_code == 0, result.output
    assert "syncing" in result.stdout and "3/3" in result.stdout  # the progress bar
    for name in ("p1", "p2", "p3"):
        assert f"{name}: ok, 3 balances" in result.stdout
    assert "synced 3 of 3 accounts" in result.stdout


class PerpVenue:
    """A derivatives venue (not ccxt) registered by a test plugin: positions come from `positions`."""

    name = "perpstub"
    testnet = True
    capabilities = frozenset({"fetch_positions"})
    positions: list = []

    def __init__(self, config: Any):
        self.config = config

    def load_markets(self, reload: bool = False):
        from tradeguard.types import Market, MarketKind

        return {"BTC/USDT:USDT": Market("BTC/USDT:USDT", "BTC", "USDT", MarketKind.FUTURES)}

    def fetch_ticker(self, symbol: str):
        from tradeguard.types import Ticker
        from tradeguard.clock import utcnow

        return Ticker(symbol, None, None, Decimal("50000"), utcnow())

    def fetch_balance(self):
        from tradeguard.types import Balance

        return [Balance("USDT", Decimal("900"), Decimal("100"), Decimal("1000"))]

    def fetch_positions(self):
        return list(type(self).positions)

    def fetch_open_orders(self, symbol=None):
        return []

    def fetch_my_trades(self, symbol=None, since=None):
        return []

    def close(self) -> None:
        return None


class PerpPlugin:
    @hookimpl
    def register_exchanges(self, register):
        register("perpstub", PerpVenue)


def test_sync_stores_derivatives_positions_and_closes_vanished_ones(tmp_path, home):
    from tradeguard.storage.models import Position, PositionSnapshot
    from tradeguard.types import MarketKind, Side, VenuePosition

    PerpVenue.positions = [VenuePosition("BTC/USDT:USDT", Side.SELL, Decimal("0.25"), Decimal("61000"),
                                         leverage=Decimal("3"), unrealized_pnl=Decimal("-12.5"))]
    with open_engine(f"sqlite:///{tmp_path / 'tg.db'}", home, PerpPlugin()) as engine:
        engine.accounts.add("perp", "perpstub", mode="live")
        [result] = engine.sync("perp")
        assert result.ok and result.positions == 1, result.error
        position = Position.get()
        assert position.market is MarketKind.FUTURES and position.quantity == Decimal("-0.25")
        assert position.average_cost == Decimal("61000") and position.leverage == Decimal("3")
        assert position.unrealized_pnl == Decimal("-12.5")
        assert PositionSnapshot.get().quantity == Decimal("-0.25")
        assert SyncLog.get().positions_after == {"BTC/USDT:USDT (futures)": "-0.25"}

        PerpVenue.positions = []
        [closed] = engine.sync("perp")
        assert closed.ok
        position = Position.get()
        assert position.quantity == 0 and position.closed_at is not None
        last = SyncLog.select().order_by(SyncLog.id.desc()).get()
        assert last.positions_before == {"BTC/USDT:USDT (futures)": "-0.25"} and last.positions_after == {}


def test_coinbase_account_syncs_with_usd_values_and_imported_fills(tmp_path, home):
    with open_engine(f"sqlite:///{tmp_path / 'tg.db'}", home) as engine:
        engine.accounts.add("cb", "coinbase", mode="live", mainnet=True, quote_currency="USD")
        engine.vault.set_credentials("cb", h.coinbase_secrets())
        t = h.install(engine, "cb", "coinbase")
        [result] = engine.sync("cb")
        assert result.ok, result.error
        assert t.last("GET", "/api/v3/brokerage/accounts").header("Authorization").startswith("Bearer ")
        # the open order the venue has (placed outside tradeguard) and the fill of another order
        assert Order.get(Order.client_order_id == "tg-cb-1").imported
        trade = Trade.get()
        assert trade.imported and trade.fee == Decimal("0.79641108") and trade.fee_currency == "USD"
        assert trade.usd_value == Decimal("66.36759")
        assert Account.get().current_cash == Decimal("10000")
        assert Decimal(result.balance_usd) > Decimal("10000")
