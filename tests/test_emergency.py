"""Trading states and the emergency stop: HALTED first, cancels and
liquidation after, events recorded, attributed resume, survives restarts,
works while the venue is failing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders_helpers import paper_account
from tradeguard.errors import EmergencyStopActive, ValidationError
from tradeguard.hookspecs import hookimpl
from tradeguard.storage import use_database
from tradeguard.storage.models import EmergencyEvent, Order, Position


def events(engine):
    with use_database(engine.db):
        return list(EmergencyEvent.select().order_by(EmergencyEvent.id))


def test_stop_halts_cancels_and_records_an_event(engine):
    venue = paper_account(engine, price="100")
    resting = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="50", actor="t")
    result = engine.emergency_stop("p", reason="runaway bot", source="ops")
    assert result["orders_cancelled"] == 1 and result["orders_cancel_failed"] == 0
    assert engine.orders.get(resting.id).status.value == "CANCELED"
    assert engine.trading.effective_state("p").value == "HALTED"
    with pytest.raises(EmergencyStopActive, match="HALTED") as info:
        engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")
    assert engine.orders.get(info.value.order_id).status.value == "REJECTED"
    assert len(venue.sent) == 1
    [event] = events(engine)
    assert event.event_type == "HALT" and event.reason == "runaway bot" and event.source == "ops"
    assert event.orders_cancelled == 1 and not event.resolved
    engine.resume("p", by="erin", notes="fixed the bot")
    event = events(engine)[0]
    assert event.resolved and event.resolved_by == "erin" and event.resolution_notes == "fixed the bot"
    engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")


def test_stop_survives_a_restart(tmp_path, home):
    from tradeguard import Engine

    url = f"sqlite:///{tmp_path / 's.db'}"
    with Engine.open(url, home=home, load_entrypoints=False) as engine:
        paper_account(engine, price="100")
        engine.emergency_stop(None, reason="maintenance", source="ops")
    with Engine.open(url, home=home, load_entrypoints=False) as engine:
        assert engine.trading.installation_state().value == "HALTED"
        with pytest.raises(EmergencyStopActive, match="installation-wide"):
            engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")
        with pytest.raises(ValidationError):
            engine.resume(None, by="")
        engine.resume(None, by="ops")
        engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t")


def test_stop_works_while_the_venue_is_failing(sqlite_engine):
    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    order = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="50", actor="t")
    venue.fail_next("down")
    result = engine.emergency_stop("p", reason="venue flapping", source="ops")
    assert engine.trading.effective_state("p").value == "HALTED"  # the flag is set regardless
    assert result["orders_cancel_failed"] == 1 and result["orders_cancelled"] == 0
    assert "simulated outage" in result["errors"][0]
    assert engine.orders.get(order.id).status.value == "OPEN"
    venue.recover()
    report = engine.reconcile("p")  # retried by reconciliation on a HALTED account
    assert report["cancelled"] == 1
    assert engine.orders.get(order.id).status.value == "CANCELED"


def test_reducing_allows_only_exposure_reducing_orders(engine):
    paper_account(engine, price="100")
    engine.place_order("p", "BTC/USDT", "buy", "2", actor="t")
    resting = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="50", actor="t")
    engine.trading.reduce("p", reason="de-risk")
    with pytest.raises(EmergencyStopActive, match="REDUCING"):
        engine.place_order("p", "BTC/USDT", "buy", "0.5", actor="t")
    engine.place_order("p", "BTC/USDT", "sell", "1", actor="t")
    engine.cancel_order(resting.id)  # cancels always pass
    with pytest.raises(EmergencyStopActive):
        engine.place_order("p", "BTC/USDT", "sell", "5", actor="t")  # would flip to short: not reducing
    assert [e.event_type for e in events(engine)] == ["REDUCE"]


def test_liquidation_closes_positions_with_reduce_only_orders(engine):
    venue = paper_account(engine, price="100", capital="10000")
    venue.set_price("ETH/USDT", "10")
    engine.place_order("p", "BTC/USDT", "buy", "2", actor="t")
    engine.place_order("p", "ETH/USDT", "buy", "5", actor="t")
    venue.set_price("BTC/USDT", "90")
    result = engine.emergency_stop("p", reason="crash", source="ops", liquidate=True)
    assert result["positions_liquidated"] == 2
    with use_database(engine.db):
        assert all(p.quantity == 0 for p in Position.select())
        liquidations = list(Order.select().where(Order.created_by == "emergency"))
    assert len(liquidations) == 2 and all(o.reduce_only and o.status.value == "FILLED" for o in liquidations)
    assert Decimal(result["financial_impact"]) < 0  # sold BTC below cost, plus fees


def test_installation_stop_halts_every_account(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, "a", price="100")
    paper_account(engine, "b", price="100")
    engine.place_order("b", "BTC/USDT", "buy", "1", type="limit", price="10", actor="t")
    result = engine.emergency_stop(None, reason="all hands", source="ops")
    assert result["affected_accounts"] == 2 and result["orders_cancelled"] == 1
    status = engine.trading.status()
    assert status["installation"]["state"] == "HALTED"
    assert {a["effective"] for a in status["accounts"]} == {"HALTED"}
    # resuming one account does not lift the installation-wide stop
    engine.resume("a", by="ops")
    assert engine.trading.effective_state("a").value == "HALTED"


class StopRecorder:
    def __init__(self):
        self.seen = []

    @hookimpl
    def on_emergency_stop(self, account, event):
        self.seen.append(("stop", account, event["reason"]))

    @hookimpl
    def on_resume(self, account, by, notes):
        self.seen.append(("resume", account, by))


def test_stop_and_resume_fire_events(tmp_path, home):
    from tradeguard import Engine

    recorder = StopRecorder()
    with Engine.open(f"sqlite:///{tmp_path / 'e.db'}", home=home, load_entrypoints=False,
                     plugins=[recorder]) as engine:
        paper_account(engine, price="100")
        engine.emergency_stop("p", reason="why not", source="ops")
        engine.resume("p", by="ops")
    assert recorder.seen == [("stop", "p", "why not"), ("resume", "p", "ops")]


def test_stop_needs_a_reason(sqlite_engine):
    paper_account(sqlite_engine, price="100")
    with pytest.raises(ValidationError, match="reason"):
        sqlite_engine.emergency_stop("p", reason=" ")
    assert sqlite_engine.trading.effective_state("p").value == "ACTIVE"


def test_an_order_in_flight_during_a_stop_is_never_sent(sqlite_engine, monkeypatch):
    """Committed by one process, not yet sent, when another process stops the account."""
    from tradeguard.orders import service

    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    monkeypatch.setattr(service.Orders, "_submit_admitted", lambda self, order, account: Order.get_by_id(order.id))
    order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="bot")
    monkeypatch.undo()
    assert order.status.value == "PENDING_SUBMIT"
    result = engine.emergency_stop("p", reason="stop now", source="ops")
    assert result["orders_cancel_failed"] == 1  # it may be on its way: not marked cancelled blindly
    resumed = engine.orders.submit(order.id)  # the sending process continues
    assert resumed.status.value == "CANCELED" and resumed.error_code == "halted"
    assert venue.sent == [] and engine.accounts.get("p").frozen_cash == 0



def test_a_stop_landing_between_the_commit_and_the_send_of_place_stops_the_order(sqlite_engine, monkeypatch):
    """`place` re-reads the order's status and the account's state after its commit: a stop that lands in
    between (another process) keeps the order from being sent."""
    from tradeguard.orders import service

    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    send = service.Orders._submit_admitted

    def stop_first(self, order, account):
        engine.emergency_stop("p", reason="stop now", source="ops")
        return send(self, order, account)

    monkeypatch.setattr(service.Orders, "_submit_admitted", stop_first)
    order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="bot")
    assert order.status.value == "CANCELED" and order.error_code == "halted"
    assert venue.sent == []
