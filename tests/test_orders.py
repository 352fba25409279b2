"""The order lifecycle through the Engine API, on the paper venue (both backends)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders_helpers import paper_account
from tradeguard.errors import (
    ConfirmationRequired,
    NotFound,
    RiskRejected,
    ValidationError,
    VenueRejected,
    VenueUnavailable,
)
from tradeguard.hookspecs import hookimpl
from tradeguard.storage import use_database
from tradeguard.storage.models import AuditLog, Order, OrderEvent, Position, Trade


def rows(engine, model, *where):
    with use_database(engine.db):
        query = model.select()
        for clause in where:
            query = query.where(clause)
        return list(query)


def account(engine, name="p"):
    return engine.accounts.get(name)


def position(engine, name="p", symbol="BTC/USDT"):
    acct = account(engine, name)
    found = rows(engine, Position, Position.account == acct.id, Position.symbol == symbol)
    return found[0] if found else None


def test_market_buy_is_recorded_sent_filled_and_booked(engine):
    venue = paper_account(engine, price="100", capital="10000")
    order = engine.place_order("p", "BTC/USDT", "buy", "2", actor="alice", reason="test entry")
    assert order.status.value == "FILLED"
    assert order.client_order_id.startswith("tg-") and len(order.client_order_id) >= 20
    assert order.created_by == "alice" and order.reason == "test entry"
    assert order.filled_quantity == Decimal("2")
    # paper slippage 0.0005 and taker fee 0.001
    assert order.average_fill_price == Decimal("100.05")
    assert order.fee == Decimal("0.2001")
    acct = account(engine)
    assert acct.current_cash == Decimal("10000") - Decimal("200.1") - Decimal("0.2001")
    assert acct.frozen_cash == 0
    pos = position(engine)
    assert pos.quantity == Decimal("2") and pos.average_cost == Decimal("100.05")
    events = [(e.old_status, e.new_status) for e in engine.orders.events(order.id)]
    assert events == [(None, "PENDING_SUBMIT"), ("PENDING_SUBMIT", "FILLED")]
    assert venue.sent == [order.client_order_id]
    trades = rows(engine, Trade, Trade.order == order.id)
    assert len(trades) == 1 and trades[0].quantity == Decimal("2")


def test_client_order_ids_are_random_and_never_repeat(engine):
    paper_account(engine, price="100")
    ids = {engine.place_order("p", "BTC/USDT", "buy", "0.01", actor="t").client_order_id for _ in range(5)}
    assert len(ids) == 5
    assert all(i.startswith("tg-") and len(i) == 25 for i in ids)


def test_limit_order_rests_reserves_cash_then_fills_when_price_crosses(engine):
    venue = paper_account(engine, price="100", capital="10000")
    order = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="90", actor="t")
    assert order.status.value == "OPEN"
    assert account(engine).frozen_cash == Decimal("90")
    assert order.reserved_amount == Decimal("90") and order.reserved_asset == "USDT"
    venue.set_price("BTC/USDT", "89")
    report = engine.reconcile("p")
    assert report["updated"] == 1
    filled = engine.orders.get(order.id)
    assert filled.status.value == "FILLED" and filled.average_fill_price == Decimal("90")
    assert account(engine).frozen_cash == 0
    assert filled.fee == Decimal("0.09")  # maker fee on a resting order


def test_sell_realizes_pnl_with_average_cost(engine):
    venue = paper_account(engine, price="100", capital="10000")
    venue.recover()
    engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="100", actor="t")
    venue.set_price("BTC/USDT", "120")
    engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="120", actor="t")
    pos = position(engine)
    assert pos.quantity == 2 and pos.average_cost == Decimal("110")
    venue.set_price("BTC/USDT", "130")
    engine.place_order("p", "BTC/USDT", "sell", "1", type="limit", price="130", actor="t")
    pos = position(engine)
    assert pos.quantity == 1 and pos.average_cost == Decimal("110") and pos.realized_pnl == Decimal("20")


def test_large_market_order_fills_in_parts(sqlite_engine):
    engine = sqlite_engine
    engine.accounts.add("big", "paper", initial_capital="1000000", max_position_size="10000000",
                        settings={"liquidity": "1000"})
    venue = engine.orders.venues.for_account(engine.accounts.get("big"))
    venue.set_price("BTC/USDT", "100")
    order = engine.place_order("big", "BTC/USDT", "buy", "25", actor="t")
    assert order.status.value == "PARTIALLY_FILLED"
    assert Decimal(0) < order.filled_quantity < Decimal(25)
    for _ in range(5):
        venue.tick()
    order = engine.reconcile("big") and engine.orders.get(order.id)
    assert order.status.value == "FILLED" and order.filled_quantity == 25
    assert len(rows(engine, Trade, Trade.order == order.id)) >= 3
    assert engine.accounts.get("big").frozen_cash == 0


def test_cancel_releases_reservation_and_is_audited(engine):
    paper_account(engine, price="100")
    order = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="50", actor="t")
    cancelled = engine.cancel_order(order.id, actor="bob", reason="changed my mind")
    assert cancelled.status.value == "CANCELED"
    assert account(engine).frozen_cash == 0
    actions = [(a.action, a.actor) for a in rows(engine, AuditLog)]
    assert ("order.state", "bob") in actions
    with pytest.raises(ValidationError, match="already CANCELED"):
        engine.cancel_order(order.id)


def test_stop_loss_and_take_profit_children_oco_and_parent_cancel(engine):
    venue = paper_account(engine, price="100", capital="10000")
    parent = engine.place_order("p", "BTC/USDT", "buy", "1", stop_loss="90", take_profit="120", actor="t")
    assert parent.status.value == "FILLED"
    children = rows(engine, Order, Order.parent == parent.id)
    assert {c.reduce_only for c in children} == {True}
    kinds = {("stop" if c.stop_loss else "tp"): c for c in children}
    assert kinds["stop"].stop_loss == Decimal("90") and kinds["stop"].side.value == "sell"
    assert kinds["tp"].price == Decimal("120") and kinds["tp"].type.value == "limit"
    assert {c.status.value for c in children} == {"OPEN"}
    venue.set_price("BTC/USDT", "85")  # stop triggers
    engine.reconcile("p")
    stop, tp = engine.orders.get(kinds["stop"].id), engine.orders.get(kinds["tp"].id)
    assert stop.status.value == "FILLED"
    assert tp.status.value == "CANCELED"  # one-cancels-the-other
    assert position(engine).quantity == 0


def test_cancelling_a_parent_cancels_its_children(sqlite_engine):
    engine = sqlite_engine
    venue = paper_account(engine, price="100", capital="10000")
    parent = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="100", take_profit="150",
                                stop_loss="80", actor="t")
    children = rows(engine, Order, Order.parent == parent.id)
    assert len(children) == 2
    # cancelling the filled parent cancels its protective children
    engine.cancel_order(parent.id, actor="t")
    assert {engine.orders.get(c.id).status.value for c in children} == {"CANCELED"}
    with pytest.raises(ValidationError, match="already FILLED"):
        engine.cancel_order(parent.id)
    # an open (unfilled) parent: cancel it and nothing is left
    resting = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="50", stop_loss="40", actor="t")
    engine.cancel_order(resting.id)
    assert rows(engine, Order, Order.parent == resting.id) == []


def test_protective_prices_on_the_wrong_side_are_refused_and_nothing_is_stored(engine):
    paper_account(engine, price="100")
    with pytest.raises(ValidationError, match="stop_loss 110 must be below"):
        engine.place_order("p", "BTC/USDT", "buy", "1", stop_loss="110", actor="t")
    with pytest.raises(ValidationError, match="take_profit 90 must be above"):
        engine.place_order("p", "BTC/USDT", "buy", "1", take_profit="90", actor="t")
    assert rows(engine, Order) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"quantity": "-1"}, "greater than zero"),
    ({"quantity": "NaN"}, "finite"),
    ({"quantity": 0.5}, "not float"),
    ({"symbol": "DOGE/USDT"}, "unknown symbol"),
    ({"symbol": "BTCUSDT"}, "BASE/QUOTE"),
    ({"side": "hold"}, "buy or sell"),
    ({"type": "limit"}, "needs a price"),
    ({"quantity": "0.000001"}, "below the minimum"),
    ({"type": "limit", "price": "0.001", "quantity": "0.001"}, "rounds to zero|below the minimum"),
    ({"client_order_id": "bad id with spaces"}, "client_order_id"),
])
def test_bad_input_is_refused_and_changes_nothing(sqlite_engine, kwargs, message):
    engine = sqlite_engine
    paper_account(engine, price="100")
    before = len(rows(engine, AuditLog))
    args = {"symbol": "BTC/USDT", "side": "buy", "quantity": "1", **kwargs}
    with pytest.raises(ValidationError, match=message):
        engine.place_order("p", args.pop("symbol"), args.pop("side"), args.pop("quantity"), actor="t", **args)
    assert rows(engine, Order) == [] and len(rows(engine, AuditLog)) == before
    assert account(engine).frozen_cash == 0


def test_quantity_and_price_are_rounded_to_the_market_precision(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100")
    order = engine.place_order("p", "BTC/USDT", "buy", "0.123456789", type="limit", price="50.0049", actor="t")
    assert order.quantity == Decimal("0.12345") and order.price == Decimal("50.00")


def test_unknown_account_and_order(sqlite_engine):
    with pytest.raises(NotFound):
        sqlite_engine.place_order("nope", "BTC/USDT", "buy", "1", actor="t")
    with pytest.raises(NotFound):
        sqlite_engine.orders.get(12345)


# -- venue errors ------------------------------------------------------------------------------


def test_timeout_after_the_venue_accepted_is_looked_up_and_never_sent_twice(engine):
    venue = paper_account(engine, price="100")
    venue.fail_next("after_send")
    order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    assert order.status.value == "FILLED"
    assert venue.sent == [order.client_order_id]  # sent exactly once
    assert len(rows(engine, Trade)) == 1


def test_timeout_before_the_venue_acted_is_retried_once_it_is_known_absent(engine):
    venue = paper_account(engine, price="100")
    venue.fail_next("unavailable", "unavailable")
    order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    assert order.status.value == "FILLED" and order.retry_count == 2
    assert venue.sent == [order.client_order_id]


def test_retries_are_bounded_by_max_retries_then_failed(sqlite_engine):
    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    venue.fail_next(*["unavailable"] * 3)
    with pytest.raises(VenueUnavailable, match="after 3 attempts"):
        engine.place_order("p", "BTC/USDT", "buy", "1", actor="t", max_retries=2)
    order = rows(engine, Order)[0]
    assert order.status.value == "FAILED" and order.retry_count == 3
    assert venue.sent == [] and account(engine).frozen_cash == 0


def test_unknown_outcome_stays_pending_until_reconciliation(sqlite_engine):
    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    venue.fail_next("after_send", *["lookup_unavailable"] * 4)
    with pytest.raises(VenueUnavailable, match="may or may not be there"):
        engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    order = rows(engine, Order)[0]
    assert order.status.value == "PENDING_SUBMIT" and order.error_code == "unknown_outcome"
    assert account(engine).frozen_cash > 0
    report = engine.reconcile("p")
    assert report["updated"] == 1
    order = engine.orders.get(order.id)
    assert order.status.value == "FILLED" and venue.sent == [order.client_order_id]
    assert account(engine).frozen_cash == 0


def test_definite_rejection_ends_rejected_with_the_venue_code(engine):
    venue = paper_account(engine, price="100")
    venue.fail_next("rejected")
    with pytest.raises(VenueRejected, match="simulated rejection"):
        engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    order = rows(engine, Order)[0]
    assert order.status.value == "REJECTED" and order.error_code == "simulated"
    assert account(engine).frozen_cash == 0


def test_venue_insufficient_balance_is_a_rejection(sqlite_engine):
    engine = sqlite_engine
    paper_account(engine, price="100", capital="1000")
    engine.risk.disable("p", "available_balance")
    with pytest.raises(VenueRejected) as info:
        engine.place_order("p", "BTC/USDT", "buy", "50", actor="t")
    assert info.value.code == "insufficient_funds"
    assert rows(engine, Order)[0].error_code == "insufficient_funds"


# -- reconciliation ----------------------------------------------------------------------------


def test_reconcile_after_a_crash_between_commit_and_send(sqlite_engine, monkeypatch):
    """An order committed as PENDING_SUBMIT but never sent: reconciliation fails it, never sends it late."""
    from datetime import timedelta

    from tradeguard.orders import service

    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    monkeypatch.setattr(service.Orders, "_submit_admitted", lambda self, order, account: Order.get_by_id(order.id))
    order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    assert order.status.value == "PENDING_SUBMIT"
    monkeypatch.undo()
    monkeypatch.setattr(service, "RECONCILE_GRACE", timedelta(seconds=0))
    report = engine.reconcile("p")
    assert report["failed"] == 1
    assert engine.orders.get(order.id).status.value == "FAILED"
    assert venue.sent == [] and account(engine).frozen_cash == 0


def test_engine_open_reconciles_fills_that_happened_while_down(tmp_path, home):
    from tradeguard import Engine

    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Engine.open(url, home=home, load_entrypoints=False) as engine:
        venue = paper_account(engine, price="100")
        order = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="95", actor="t")
        venue.set_price("BTC/USDT", "94")  # fills at the venue; tradeguard does not know yet
        assert engine.orders.get(order.id).status.value == "OPEN"
    with Engine.open(url, home=home, load_entrypoints=False) as engine:
        assert engine.orders.get(order.id).status.value == "FILLED"
        assert position(engine).quantity == 1


def test_engine_open_without_open_orders_does_not_touch_the_venue(sqlite_engine, monkeypatch):
    engine = sqlite_engine
    paper_account(engine, price="100")
    engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    assert engine.orders.accounts_to_reconcile() == []
    assert engine.reconcile_open_orders() == {}


def test_fills_are_ingested_once_whatever_reports_them(engine):
    venue = paper_account(engine, price="100")
    order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    venue_order = venue.fetch_order("BTC/USDT", order.exchange_order_id)
    engine.orders.apply_venue_order(order.id, venue_order)
    engine.reconcile("p")
    assert len(rows(engine, Trade)) == 1
    assert position(engine).quantity == 1
    assert engine.orders.get(order.id).filled_quantity == 1


def test_venue_orders_unknown_to_the_database_are_imported_and_flagged(sqlite_engine):
    from tradeguard.types import OrderRequest

    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    tracked = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="50", actor="t")
    venue.create_order(OrderRequest("p", "BTC/USDT", "buy", Decimal("1"), "limit", Decimal("60")), "manual-1")
    report = engine.reconcile("p")
    assert report["imported_orders"] == 1
    imported = engine.orders.get("manual-1")
    assert imported.imported and imported.status.value == "OPEN" and imported.created_by == "venue"
    assert engine.orders.get(tracked.id).imported is False


# -- lifecycle rules ---------------------------------------------------------------------------


def test_illegal_transitions_raise():
    from tradeguard.orders.lifecycle import IllegalTransition, check_transition
    from tradeguard.types import OrderStatus as S

    check_transition(S.PENDING_SUBMIT, S.OPEN)
    check_transition(S.OPEN, S.PARTIALLY_FILLED)
    for old, new in [(S.FILLED, S.OPEN), (S.CANCELED, S.FILLED), (S.REJECTED, S.PENDING_SUBMIT),
                     (S.OPEN, S.PENDING_SUBMIT), (S.PENDING_CONFIRMATION, S.FILLED), (S.OPEN, S.REJECTED)]:
        with pytest.raises(IllegalTransition):
            check_transition(old, new)
    with pytest.raises(IllegalTransition):
        check_transition(None, S.FILLED)


def test_every_state_change_is_stored_and_audited(engine):
    venue = paper_account(engine, price="100")
    order = engine.place_order("p", "BTC/USDT", "buy", "1", type="limit", price="90", actor="t")
    venue.set_price("BTC/USDT", "80")
    engine.reconcile("p")
    events = rows(engine, OrderEvent, OrderEvent.order == order.id)
    audits = [a for a in rows(engine, AuditLog) if a.subject == f"order:{order.client_order_id}"]
    assert [e.new_status for e in events] == ["PENDING_SUBMIT", "OPEN", "FILLED"]
    assert len([a for a in audits if a.action in ("order.place", "order.state")]) == len(events)
    assert engine.audit.verify().ok


# -- confirmation ------------------------------------------------------------------------------


def test_live_orders_wait_for_confirmation_then_go_out(engine):
    engine.accounts.add("live", "paper", mode="live", initial_capital="10000")
    engine.accounts.set("live", trading_enabled=True)
    venue = engine.orders.venues.for_account(engine.accounts.get("live"))
    venue.set_price("BTC/USDT", "100")
    with pytest.raises(ConfirmationRequired, match="order confirm") as info:
        engine.place_order("live", "BTC/USDT", "buy", "1", actor="bot")
    pending = engine.orders.get(info.value.order_id)
    assert pending.status.value == "PENDING_CONFIRMATION" and venue.sent == []
    assert engine.accounts.get("live").frozen_cash > 0  # reserved while waiting
    with pytest.raises(ValidationError):
        engine.confirm_order(pending.id, by="")
    sent = engine.confirm_order(pending.id, by="carol")
    assert sent.status.value == "FILLED" and sent.confirmed_by == "carol"
    assert venue.sent == [sent.client_order_id]
    with pytest.raises(ValidationError, match="not waiting"):
        engine.confirm_order(pending.id, by="carol")


def test_confirmation_rechecks_the_rules(sqlite_engine):
    engine = sqlite_engine
    engine.accounts.add("live", "paper", mode="live", initial_capital="10000", max_position_size="500")
    engine.accounts.set("live", trading_enabled=True)
    engine.orders.venues.for_account(engine.accounts.get("live")).set_price("BTC/USDT", "100")
    with pytest.raises(ConfirmationRequired) as info:
        engine.place_order("live", "BTC/USDT", "buy", "4", actor="bot")
    engine.accounts.set("live", max_position_size="100")
    with pytest.raises(RiskRejected, match="max_position_size"):
        engine.confirm_order(info.value.order_id, by="carol")
    assert engine.orders.get(info.value.order_id).status.value == "REJECTED"
    assert engine.accounts.get("live").frozen_cash == 0


def test_pending_confirmation_can_be_cancelled_locally(sqlite_engine):
    engine = sqlite_engine
    engine.accounts.add("live", "paper", mode="live", initial_capital="10000")
    engine.accounts.set("live", trading_enabled=True)
    engine.orders.venues.for_account(engine.accounts.get("live")).set_price("BTC/USDT", "100")
    with pytest.raises(ConfirmationRequired) as info:
        engine.place_order("live", "BTC/USDT", "buy", "1", actor="bot")
    assert engine.cancel_order(info.value.order_id).status.value == "CANCELED"
    assert engine.accounts.get("live").frozen_cash == 0


# -- events ------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def on_order_state_changed(self, order, old_status, new_status):
        self.events.append((order["id"], old_status, new_status))

    @hookimpl
    def on_risk_rejection(self, order, decision):
        self.events.append(("rejected", order["id"], decision.rule))


class Broken:
    @hookimpl
    def on_order_state_changed(self, order, old_status, new_status):
        raise RuntimeError("alerting is down")


def test_event_hooks_fire_and_a_failing_hook_never_breaks_an_order(tmp_path, home):
    from tradeguard import Engine

    recorder = Recorder()
    with Engine.open(f"sqlite:///{tmp_path / 'h.db'}", home=home, load_entrypoints=False,
                     plugins=[Broken(), recorder]) as engine:
        paper_account(engine, price="100", max_position_size="150")
        order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
        assert order.status.value == "FILLED"
        with pytest.raises(RiskRejected):
            engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    assert (order.id, None, "PENDING_SUBMIT") in recorder.events
    assert (order.id, "PENDING_SUBMIT", "FILLED") in recorder.events
    assert ("rejected", order.id + 1, "max_position_size") in recorder.events


def test_a_retry_refused_as_duplicate_finds_the_first_attempt(sqlite_engine, monkeypatch):
    """The venue accepted the first attempt late: the lookup missed it, the retry is refused as a duplicate."""
    engine = sqlite_engine
    venue = paper_account(engine, price="100")
    real_lookup = venue.fetch_order_by_client_id
    calls = []

    def lookup(symbol, client_order_id):
        calls.append(client_order_id)
        return None if len(calls) == 1 else real_lookup(symbol, client_order_id)

    monkeypatch.setattr(venue, "fetch_order_by_client_id", lookup)
    venue.fail_next("after_send")  # accepted, answer lost; the first lookup says "not there"
    order = engine.place_order("p", "BTC/USDT", "buy", "1", actor="t")
    assert order.status.value == "FILLED"
    assert venue.sent == [order.client_order_id]
    assert len(rows(engine, Trade)) == 1
