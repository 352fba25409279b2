"""`tradeguard order explain`: the decision chain of real orders placed on the paper exchange."""

from __future__ import annotations

import pytest

from orders_helpers import paper_account
from report_helpers import at, fill
from tradeguard.errors import ConfirmationRequired, RiskRejected
from tradeguard.storage import use_database
from tradeguard.storage.models import OrderEvent


def test_a_filled_order_explains_request_rules_venue_and_fill(engine):
    paper_account(engine, "p", price="100")
    order = engine.place_order("p", "BTC/USDT", "buy", "2", actor="bot:test", reason="entry signal")
    data = engine.reports.explain(order.id)
    assert data["order"]["status"] == "FILLED"
    assert data["request"]["placed_by"] == "bot:test" and data["request"]["reason"] == "entry signal"
    rules = {r["rule"]: r for r in data["risk"]["rules"]}
    assert data["risk"]["verdict"] == "allow" and rules["max_position_size"]["verdict"] == "allow"
    assert "position_after" in rules["max_position_size"]["metrics"]
    assert data["venue"]["exchange_order_id"] and data["venue"]["exchange"] == "paper"
    assert len(data["fills"]) == 1 and data["fills"][0]["quantity"] == "2"
    actions = [s["what"] for s in data["steps"] if s["source"].startswith("audit")]
    assert actions == ["order.place", "trade.add", "order.state"]
    assert engine.reports.explain(order.client_order_id)["order"]["id"] == order.id


def test_a_rejected_order_names_the_rule_that_blocked_it(engine):
    paper_account(engine, "small", price="100", max_position_size="50")
    with pytest.raises(RiskRejected) as caught:
        engine.place_order("small", "BTC/USDT", "buy", "1")
    data = engine.reports.explain(caught.value.order_id)
    blocked = [r["rule"] for r in data["risk"]["rules"] if r["verdict"] == "block"]
    assert blocked == ["max_position_size"]
    assert data["fills"] == [] and data["venue"]["exchange_order_id"] is None
    assert any(s["source"] == "risk log" and s["what"] == "BLOCK by max_position_size" for s in data["steps"])


def test_a_confirmed_order_shows_who_confirmed_it(engine):
    engine.accounts.add("careful", "paper", mode="live", initial_capital="10000")  # LIVE: confirmation required
    engine.accounts.set("careful", trading_enabled=True)
    engine.orders.venues.for_account(engine.accounts.get("careful")).set_price("BTC/USDT", "100")
    with pytest.raises(ConfirmationRequired) as caught:
        engine.place_order("careful", "BTC/USDT", "buy", "1")
    engine.confirm_order(caught.value.order_id, by="alice")
    data = engine.reports.explain(caught.value.order_id)
    assert data["confirmation"]["confirmed_by"] == "alice"
    assert any(r["rule"] == "require_confirmation" for r in data["risk"]["rules"])
    assert data["order"]["status"] == "FILLED"
    states = [s["detail"].get("new") for s in data["steps"] if s["what"] == "order.state"]
    assert states[0] == "PENDING_SUBMIT" and states[-1] == "FILLED"


def test_without_audit_entries_the_stored_transitions_stand_in(engine):
    account = engine.accounts.add("old", "paper")
    trade = fill(engine, account, at(1), "buy", "1", "100")
    with use_database(engine.db):
        OrderEvent.create(order=trade.order_id, old_status=None, new_status="PENDING_SUBMIT", actor="cli", created_at=at(1))
        OrderEvent.create(order=trade.order_id, old_status="PENDING_SUBMIT", new_status="FILLED", actor="venue",
                          created_at=at(1, 11))
    steps = engine.reports.explain(trade.order_id)["steps"]
    assert [s["what"] for s in steps] == ["new -> PENDING_SUBMIT", "PENDING_SUBMIT -> FILLED"]


def test_cli_order_explain(sqlite_cli):
    from tradeguard import Engine

    with Engine.open(None, home=sqlite_cli.home, load_entrypoints=False) as engine:
        paper_account(engine, "p", price="100")
        order = engine.place_order("p", "BTC/USDT", "buy", "1", reason="test")
        order_id, client_id = order.id, order.client_order_id
    result = sqlite_cli("order", "explain", str(order_id))
    assert result.exit_code == 0, result.output
    for text in ("1. request", "reason: test", "2. risk     verdict allow", "max_position_size", "4. venue    paper id",
                 "5. fills    1", "timeline:", "order.place"):
        assert text in result.output, text
    assert sqlite_cli.json("order", "explain", client_id)["order"]["id"] == order_id
    missing = sqlite_cli("order", "explain", "9999")
    assert missing.exit_code == 2 and "no order '9999'" in missing.stderr
