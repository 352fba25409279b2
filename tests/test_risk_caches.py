"""What the risk check reuses between orders (validated rule settings, the rule
registry) and within one order (the context's numbers) never serves a stale
value; and the check still fails closed the way docs/risk.md says."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from orders_helpers import paper_account
from tradeguard import Engine
from tradeguard.errors import EmergencyStopActive, RiskRejected
from tradeguard.hookspecs import hookimpl
from tradeguard.risk import Assessment
from tradeguard.risk import engine as risk_engine
from tradeguard.storage import use_database
from tradeguard.storage.models import Order, RiskLog
from tradeguard.types import Decision, SettingSpec, Severity, Verdict


class MaxQuantity:
    name = "max_quantity"
    description = "orders above max_qty are refused"
    settings = (SettingSpec("max_qty", Decimal, default="5"),)
    enabled_by_default = True

    def check(self, request, context, settings):
        if request.quantity > settings["max_qty"]:
            return Decision.block(f"quantity {request.quantity} > {settings['max_qty']}")
        return Decision.allow()


class RulesPlugin:
    @hookimpl
    def register_risk_rules(self, register):
        register("max_quantity", MaxQuantity())


def place(engine, qty, side="buy", **kwargs):
    """The order's status, or the reason it was refused."""
    try:
        return engine.place_order("p", "BTC/USDT", side, qty, actor="t", **kwargs).status.value
    except RiskRejected as exc:
        return str(exc)


@pytest.fixture
def plugin_engine(db_url, home):
    with Engine.open(db_url, home=home, load_entrypoints=False, plugins=[RulesPlugin()]) as engine:
        yield engine


def test_settings_changed_by_another_process_apply_to_the_next_order(plugin_engine, db_url, home):
    engine = plugin_engine
    paper_account(engine, price="100")
    assert place(engine, "2") == "FILLED"
    with Engine.open(db_url, home=home, load_entrypoints=False, plugins=[RulesPlugin()]) as other:
        other.risk.set("p", "max_quantity", {"max_qty": "1"})
    assert "quantity 2 > 1" in place(engine, "2")
    with Engine.open(db_url, home=home, load_entrypoints=False, plugins=[RulesPlugin()]) as other:
        other.risk.disable("p", "max_quantity")
    assert place(engine, "2") == "FILLED"
    with Engine.open(db_url, home=home, load_entrypoints=False, plugins=[RulesPlugin()]) as other:
        other.risk.enable("p", "max_quantity")
    assert "quantity 2 > 1" in place(engine, "2")
    engine.risk.set("p", "max_quantity", {"max_qty": "3"})
    assert place(engine, "2") == "FILLED"


def test_a_rule_registered_after_orders_were_checked_runs_on_the_next_order(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100")
    assert place(engine, "7") == "FILLED"
    engine.plugins.register(RulesPlugin(), name="late")
    assert "quantity 7 > 5" in place(engine, "7")
    engine.plugins.unregister("late")
    assert place(engine, "7") == "FILLED"


def test_a_stored_setting_that_no_longer_validates_blocks(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100")
    engine.risk.set("p", "order_rate_limit", {"max_orders_per_minute": "100"})
    assert place(engine, "1") == "FILLED"
    with use_database(engine.db):
        engine.db.execute_sql("UPDATE risk_rule_config SET settings = ? WHERE rule = ?",
                              ('{"max_orders_per_minute": "many"}', "order_rate_limit"))
    assert "rule order_rate_limit has invalid settings" in place(engine, "1")


def test_position_changes_between_orders_are_seen(sqlite_engine):
    """REDUCING passes only orders that reduce the position as it is when each order is checked."""
    engine = sqlite_engine
    paper_account(engine, price="100")
    assert place(engine, "2") == "FILLED"
    engine.trading.reduce("p", reason="test")
    with pytest.raises(EmergencyStopActive, match="only orders that reduce the position pass"):
        engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    assert engine.place_order("p", "BTC/USDT", "sell", "1.5", actor="t").status.value == "FILLED"
    with pytest.raises(EmergencyStopActive, match=r"position 0\.5\)"):
        engine.place_order("p", "BTC/USDT", "sell", "1", actor="t")  # 1 > the 0.5 left
    assert engine.place_order("p", "BTC/USDT", "sell", "0.5", actor="t").status.value == "FILLED"
    with pytest.raises(EmergencyStopActive, match=r"position 0\)"):
        engine.place_order("p", "BTC/USDT", "sell", "0.1", actor="t")


def test_risk_log_numbers_are_read_after_the_orders_reservation(engine):
    """The available balance logged with a warning is the cash left once the order reserved its share."""
    paper_account(engine, price="100", capital="10000", max_position_size="1000")
    engine.place_order("p", "BTC/USDT", "buy", "8.5", type="limit", price="100", actor="t")
    with use_database(engine.db):
        row = RiskLog.get(RiskLog.rule == "max_position_size")
    assert row.event_type == "WARNING"
    assert row.available_balance == Decimal("9150") and row.current_position_size == Decimal("0")


class Sleepy:
    name = "sleepy"
    settings = ()
    enabled_by_default = True

    def check(self, request, context, settings):
        time.sleep(0.05)
        return Decision.allow()


class NotADecision:
    name = "not_a_decision"
    settings = ()
    enabled_by_default = True

    def check(self, request, context, settings):
        return {"verdict": "allow"}


class Odd:
    @hookimpl
    def register_risk_rules(self, register):
        register("sleepy", Sleepy())
        register("not_a_decision", NotADecision())


def test_slow_rules_and_wrong_return_values_block(tmp_path, home, monkeypatch):
    with Engine.open(f"sqlite:///{tmp_path / 'o.db'}", home=home, load_entrypoints=False, plugins=[Odd()]) as engine:
        paper_account(engine, price="100")
        monkeypatch.setattr(risk_engine, "RULE_TIMEOUT", 0.02)
        reason = place(engine, "1")
        assert "not_a_decision: rule not_a_decision returned dict, not a Decision" in reason
        assert "sleepy: rule sleepy timed out (" in reason and "s > 0.02s)" in reason
        with use_database(engine.db):
            order = Order.select().order_by(Order.id.desc()).get()
        rules = {r["rule"]: r for r in order.risk_details["rules"]}
        assert rules["sleepy"]["verdict"] == "block" and rules["sleepy"]["severity"] == "CRITICAL"
        assert rules["trading_enabled"] == {"rule": "trading_enabled", "verdict": "allow", "severity": "INFO",
                                            "reason": "", "metrics": {}}
        monkeypatch.setattr(risk_engine, "RULE_TIMEOUT", 2.0)  # a fast rule is not charged for the slow one
        engine.risk.disable("p", "not_a_decision")
        assert place(engine, "1") == "FILLED"


def test_assessment_groups_follow_its_results():
    assessment = Assessment([("a", Decision.allow()), ("b", Decision.warn("close", used=Decimal("0.80")))])
    assert assessment.verdict is Verdict.ALLOW and [n for n, _ in assessment.warnings] == ["b"]
    assessment.results.append(("c", Decision.confirm("check")))
    assert assessment.verdict is Verdict.CONFIRM and [n for n, _ in assessment.confirmations] == ["c"]
    assessment.results[0] = ("a", Decision.block("no"))
    assert assessment.verdict is Verdict.BLOCK and assessment.reason() == "a: no"
    assessment.blocks.clear()  # a copy: the assessment keeps its groups
    assert [n for n, _ in assessment.blocks] == ["a"]
    assert assessment.details()["rules"][1] == {"rule": "b", "verdict": "allow", "severity": "WARNING",
                                                "reason": "close", "metrics": {"used": "0.8"}}
    combined = assessment.combined()
    assert combined.verdict is Verdict.BLOCK and combined.severity is Severity.CRITICAL and combined.rule == "a"
