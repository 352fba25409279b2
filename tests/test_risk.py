"""The risk engine and the standard rules: blocks with numbers, warnings at
80%, fail-closed behaviour, per-account configuration, the risk log."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders_helpers import paper_account
from tradeguard.errors import NotFound, RiskRejected, ValidationError
from tradeguard.hookspecs import hookimpl
from tradeguard.storage import use_database
from tradeguard.storage.models import Order, RiskLog
from tradeguard.types import Decision, SettingSpec


def logs(engine, **where):
    with use_database(engine.db):
        return [r for r in RiskLog.select().order_by(RiskLog.id) if all(getattr(r, k) == v for k, v in where.items())]


def rejected(engine, *args, **kwargs) -> RiskRejected:
    kwargs.setdefault("actor", "t")
    with pytest.raises(RiskRejected) as info:
        engine.place_order(*args, **kwargs)
    return info.value


def test_max_position_size_blocks_with_numbers_and_logs_the_context(engine):
    paper_account(engine, price="100", max_position_size="500")
    engine.place_order("p", "BTC/USDT", "buy", "3", type="limit", price="100", actor="t")
    exc = rejected(engine, "p", "BTC/USDT", "buy", "3", type="limit", price="100")
    assert "max_position_size" in str(exc) and "600 > max_position_size 500" in str(exc)
    order = engine.orders.get(exc.order_id)
    assert order.status.value == "REJECTED" and order.risk_verdict == "block"
    rules = {r["rule"]: r for r in order.risk_details["rules"]}
    assert rules["max_position_size"]["metrics"]["position_after"] == "600"
    row = logs(engine, event_type="BLOCK")[0]
    assert row.rule == "max_position_size" and row.severity == "CRITICAL" and row.order_id == order.id
    assert row.current_position_size == Decimal("300") and row.available_balance is not None
    assert row.total_exposure == Decimal("300") and row.action_taken == "order_rejected"
    assert row.action_result == "REJECTED"
    # reducing orders always pass the size limit
    engine.place_order("p", "BTC/USDT", "sell", "3", type="limit", price="100", actor="t")


def test_approaching_a_limit_writes_a_warning_without_blocking(engine):
    paper_account(engine, price="100", max_position_size="1000")
    order = engine.place_order("p", "BTC/USDT", "buy", "8.5", type="limit", price="100", actor="t")
    assert order.status.value == "FILLED"
    warning = logs(engine, event_type="WARNING", rule="max_position_size")
    assert len(warning) == 1 and warning[0].severity == "WARNING" and "85" in warning[0].message


def test_pending_orders_count_against_the_position_limit(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100", max_position_size="500")
    engine.place_order("p", "BTC/USDT", "buy", "4", type="limit", price="90", actor="t")  # rests
    exc = rejected(engine, "p", "BTC/USDT", "buy", "2", type="limit", price="90")
    assert "max_position_size" in str(exc)


def test_max_open_positions(sqlite_engine):
    engine = sqlite_engine
    venue = paper_account(engine, price="100", max_open_positions="1")
    venue.set_price("ETH/USDT", "10")
    engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    exc = rejected(engine, "p", "ETH/USDT", "buy", "1")
    assert "2 open positions > max_open_positions 1" in str(exc)
    engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")  # adding to the open one passes


def test_max_leverage(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100", max_leverage="2")
    exc = rejected(engine, "p", "BTC/USDT", "buy", "1", leverage="5")
    assert "leverage 5 > max_leverage 2" in str(exc)


def test_max_daily_loss_allows_only_risk_reducing_orders_and_can_stop(sqlite_engine):
    engine = sqlite_engine
    venue = paper_account(engine, price="100", max_daily_loss="50")
    engine.place_order("p", "BTC/USDT", "buy", "2", type="limit", price="100", actor="t")
    venue.set_price("BTC/USDT", "70")  # unrealized loss 60
    exc = rejected(engine, "p", "BTC/USDT", "buy", "0.1", type="limit", price="70")
    assert "daily loss" in str(exc) and "max_daily_loss 50" in str(exc)
    engine.place_order("p", "BTC/USDT", "sell", "1", type="limit", price="70", actor="t")  # reduces: passes
    engine.risk.set("p", "max_daily_loss", {"auto_stop": "true"})
    rejected(engine, "p", "BTC/USDT", "buy", "0.1", type="limit", price="70")
    assert engine.trading.effective_state("p").value == "HALTED"


def test_slippage_tolerance_against_the_ticker(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100", slippage_tolerance="0.01")
    exc = rejected(engine, "p", "BTC/USDT", "buy", "1", price="98")  # expects 98, ask is 100.01
    assert "slippage" in str(exc) and "tolerance 1%" in str(exc)
    engine.place_order("p", "BTC/USDT", "buy", "1", price="99.5", actor="t")


def test_order_rate_limit(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100")
    engine.risk.set("p", "order_rate_limit", {"max_orders_per_minute": "3"})
    for _ in range(3):
        engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")
    exc = rejected(engine, "p", "BTC/USDT", "buy", "0.01")
    assert "3 orders in the last minute ≥ max_orders_per_minute 3" in str(exc)


def test_margin_guard_blocks_thin_margin(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100", capital="100", max_leverage="10")
    exc = rejected(engine, "p", "BTC/USDT", "buy", "9.5", leverage="10", type="limit", price="100")
    assert "margin level" in str(exc) and "add about" in str(exc)


def test_available_balance_and_no_spot_short(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100", capital="150")
    exc = rejected(engine, "p", "BTC/USDT", "buy", "2", type="limit", price="100")
    assert "order needs 200 USDT, 150 available" in str(exc)
    exc = rejected(engine, "p", "BTC/USDT", "sell", "1", type="limit", price="100")
    assert "held and not reserved" in str(exc)


def test_no_known_balance_fails_closed(sqlite_engine):
    engine = sqlite_engine
    engine.accounts.add("empty", "paper")
    exc = rejected(engine, "empty", "BTC/USDT", "buy", "0.01")
    assert "no balance known" in str(exc)
    assert logs(engine)[0].severity == "CRITICAL"


def test_trading_disabled_blocks(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100")
    engine.accounts.set("p", trading_enabled=False)
    assert "trading is disabled" in str(rejected(engine, "p", "BTC/USDT", "buy", "0.01"))


def test_testnet_only_account_never_trades_on_mainnet(sqlite_engine, monkeypatch):
    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    monkeypatch.setattr(venue, "testnet", False)
    assert "testnet-only" in str(rejected(engine, "p", "BTC/USDT", "buy", "0.01"))
    engine.accounts.set("p", mainnet=True)
    engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")


def test_missing_ticker_fails_closed(sqlite_engine, monkeypatch):
    from tradeguard.errors import VenueUnavailable

    engine = sqlite_engine
    venue = paper_account(engine, price="100")

    def down(symbol):
        raise VenueUnavailable("ticker endpoint down")

    monkeypatch.setattr(venue, "fetch_ticker", down)
    exc = rejected(engine, "p", "BTC/USDT", "buy", "0.01")
    assert "cannot check the order: no ticker for BTC/USDT: ticker endpoint down" in str(exc)


# -- plugins and configuration -----------------------------------------------------------------


class ExplodingRule:
    name = "exploding"
    description = "always raises"
    settings = ()
    enabled_by_default = True

    def check(self, request, context, settings):
        raise RuntimeError("kaboom")


class SymbolBan:
    name = "symbol_ban"
    description = "refuses one symbol"
    settings = (SettingSpec("symbol", str, default="ETH/USDT"), SettingSpec("max_qty", Decimal, default="5"))
    enabled_by_default = False

    def check(self, request, context, settings):
        if request.symbol == settings["symbol"]:
            return Decision.block(f"{request.symbol} is banned")
        return Decision.allow()


class RulesPlugin:
    @hookimpl
    def register_risk_rules(self, register):
        register("exploding", ExplodingRule())
        register("symbol_ban", SymbolBan(), settings=SymbolBan.settings)


@pytest.fixture
def plugin_engine(tmp_path, home):
    from tradeguard import Engine

    with Engine.open(f"sqlite:///{tmp_path / 'r.db'}", home=home, load_entrypoints=False,
                     plugins=[RulesPlugin()]) as engine:
        yield engine


def test_a_raising_rule_blocks_with_a_critical_log(plugin_engine):
    engine = plugin_engine
    paper_account(engine, price="100")
    exc = rejected(engine, "p", "BTC/USDT", "buy", "0.01")
    assert "rule exploding failed: RuntimeError: kaboom" in str(exc)
    assert logs(engine, rule="exploding")[0].severity == "CRITICAL"
    engine.risk.disable("p", "exploding")
    engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")


def test_third_party_rules_are_listed_disabled_until_enabled(plugin_engine):
    engine = plugin_engine
    venue = paper_account(engine, price="100")
    venue.set_price("ETH/USDT", "10")
    engine.risk.disable("p", "exploding")
    rules = {r["rule"]: r for r in engine.risk.rules("p")}
    assert rules["symbol_ban"]["enabled"] is False
    assert rules["symbol_ban"]["plugin"].startswith("RulesPlugin")
    assert rules["max_position_size"]["plugin"] == "standard_rules"
    engine.place_order("p", "ETH/USDT", "buy", "1", actor="t")
    engine.risk.enable("p", "symbol_ban")
    assert "ETH/USDT is banned" in str(rejected(engine, "p", "ETH/USDT", "buy", "1"))
    engine.risk.set("p", "symbol_ban", {"symbol": "SOL/USDT"})
    engine.place_order("p", "ETH/USDT", "buy", "1", actor="t")


def test_rule_settings_are_validated_against_the_schema(plugin_engine):
    engine = plugin_engine
    paper_account(engine, price="100")
    with pytest.raises(ValidationError, match="unknown setting 'colour'"):
        engine.risk.set("p", "symbol_ban", {"colour": "red"})
    with pytest.raises(ValidationError, match="max_qty"):
        engine.risk.set("p", "symbol_ban", {"max_qty": "lots"})
    with pytest.raises(ValidationError, match="expected int"):
        engine.risk.set("p", "order_rate_limit", {"max_orders_per_minute": "fast"})
    with pytest.raises(NotFound, match="unknown risk rule"):
        engine.risk.enable("p", "no_such_rule")
    with pytest.raises(ValidationError, match="mandatory"):
        engine.risk.disable("p", "emergency_stop")


def test_configuration_changes_are_audited(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100")
    engine.risk.set("p", "order_rate_limit", {"max_orders_per_minute": "10"}, actor="dave")
    engine.risk.disable("p", "slippage_tolerance", actor="dave")
    from tradeguard.storage.models import AuditLog

    with use_database(engine.db):
        actions = [(a.action, a.actor) for a in AuditLog.select()]
    assert ("risk.set", "dave") in actions and ("risk.disable", "dave") in actions
    assert engine.audit.verify().ok


def test_risk_log_filters(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100", max_position_size="50")
    paper_account(engine, "q", price="100", max_position_size="50")
    rejected(engine, "p", "BTC/USDT", "buy", "1")
    rejected(engine, "q", "BTC/USDT", "buy", "1")
    assert {r["account"] for r in engine.risk.log("p")} == {"p"}
    assert len(engine.risk.log()) >= 2
    from datetime import timedelta

    from tradeguard.clock import utcnow

    assert engine.risk.log(since=utcnow() + timedelta(minutes=1)) == []
