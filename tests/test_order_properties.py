"""Property tests: random order sequences on the paper venue, checked after
every step against a small reference model written here (not the code
under test). The model rebuilds positions, cash, realized PnL and
reservations from the venue's own fills and the orders' states."""

from __future__ import annotations

import tempfile
from decimal import Decimal, localcontext
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders_helpers import paper_account
from tradeguard.errors import OrderNotSent, ValidationError, VenueRejected
from tradeguard.storage import use_database
from tradeguard.storage.models import AuditLog, Order, OrderEvent, Position

LIMIT = Decimal("400")
CAPITAL = Decimal("1000")
PRICES = ["90", "95", "100", "105", "110"]

place = st.tuples(st.just("place"), st.sampled_from(["buy", "buy", "sell"]), st.sampled_from(["0.5", "1", "2"]),
                  st.sampled_from(["market", "limit"]), st.sampled_from(PRICES))
move = st.tuples(st.just("price"), st.sampled_from(PRICES))
cancel = st.tuples(st.just("cancel"), st.integers(0, 5))
sync = st.tuples(st.just("reconcile"))
operations = st.lists(st.one_of(place, place, move, cancel, sync), min_size=1, max_size=12)


class Model:
    """Independent bookkeeping: average cost, realized PnL and cash from a list of fills."""

    def __init__(self, capital: Decimal):
        self.cash = capital
        self.qty = Decimal(0)
        self.cost = Decimal(0)
        self.realized = Decimal(0)

    def apply(self, side: str, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        with localcontext() as ctx:
            ctx.prec = 60
            if side == "buy":
                self.cost = (self.qty * self.cost + qty * price) / (self.qty + qty)
                self.qty += qty
                self.cash -= qty * price + fee
            else:
                assert qty <= self.qty, "the venue sold more than was held"
                self.realized += (price - self.cost) * qty
                self.qty -= qty
                if self.qty == 0:
                    self.cost = Decimal(0)
                self.cash += qty * price - fee


def check_invariants(engine, venue, accepted_checks):
    with use_database(engine.db):
        account = engine.accounts.get("p")
        orders = list(Order.select().where(Order.account == account.id))
        model = Model(CAPITAL)
        fills = sorted(venue.fetch_my_trades("BTC/USDT"), key=lambda f: int(f.trade_id.rsplit("-", 1)[1]))
        tracked = {o.client_order_id: o for o in orders}
        for fill in fills:
            model.apply(fill.side.value, fill.quantity, fill.price, fill.fee)
        position = Position.get_or_none(Position.account == account.id)
        held = position.quantity if position else Decimal(0)
        # positions and cash equal what the fills imply
        assert held == model.qty
        assert account.current_cash == model.cash
        if position is not None:
            assert abs(position.average_cost - model.cost) < Decimal("1e-30")
            assert abs(position.realized_pnl - model.realized) < Decimal("1e-30")
        # each order's filled quantity is the sum of its fills
        for order in orders:
            own = [f for f in fills if f.client_order_id == order.client_order_id]
            assert order.filled_quantity == sum((f.quantity for f in own), Decimal(0)), order.id
        # reservations: open limit buys reserve price x remaining; nothing else holds cash
        expected_frozen = Decimal(0)
        for order in orders:
            if order.status.value in ("PENDING_SUBMIT", "OPEN", "PARTIALLY_FILLED") and order.side.value == "buy":
                expected_frozen += order.price * (order.quantity - order.filled_quantity)
            elif order.status.is_final:
                assert order.reserved_amount == 0, order.id
        assert abs(account.frozen_cash - expected_frozen) < Decimal("1e-30")
        assert account.frozen_cash >= 0
        # every state change has an audit entry, and the chain verifies
        events = OrderEvent.select().count()
        audited = AuditLog.select().where(AuditLog.action.in_(["order.place", "order.state"])).count()
        assert events == audited
        assert engine.audit.verify().ok
        # no accepted order ever broke the position limit when it was placed
        for exposure in accepted_checks:
            assert exposure <= LIMIT, exposure


def run_sequence(ops, url, home):
    from tradeguard import Engine

    with Engine.open(url, home=home, load_entrypoints=False, reconcile=False) as engine:
        venue = paper_account(engine, price="100", capital=str(CAPITAL), max_position_size=str(LIMIT),
                              max_daily_loss="1000000")
        engine.risk.set("p", "order_rate_limit", {"max_orders_per_minute": "1000"})
        engine.risk.disable("p", "slippage_tolerance")
        price = Decimal("100")
        accepted_checks = []
        for op in ops:
            if op[0] == "place":
                _, side, qty, type_, limit = op
                with use_database(engine.db):
                    account = engine.accounts.get("p")
                    pos = Position.get_or_none(Position.account == account.id)
                    held = pos.quantity if pos else Decimal(0)
                    pending = sum((o.quantity - o.filled_quantity for o in Order.select().where(
                        (Order.account == account.id) & (Order.side == "buy")
                        & Order.status.in_(["PENDING_SUBMIT", "OPEN", "PARTIALLY_FILLED"]))), Decimal(0))
                order_price = Decimal(limit) if type_ == "limit" else price
                try:
                    order = engine.place_order("p", "BTC/USDT", side, qty, type=type_,
                                               price=limit if type_ == "limit" else None, actor="prop")
                except (OrderNotSent, VenueRejected):
                    continue
                if side == "buy":
                    accepted_checks.append((held + pending + Decimal(qty)) * order_price)
            elif op[0] == "price":
                price = Decimal(op[1])
                venue.set_price("BTC/USDT", price)  # resting orders may fill at the venue …
                engine.reconcile("p")  # … and tradeguard follows, as a bot's loop would
            elif op[0] == "cancel":
                open_orders = engine.orders.list("p", status=["OPEN", "PARTIALLY_FILLED"])
                if open_orders:
                    try:
                        engine.cancel_order(open_orders[op[1] % len(open_orders)].id)
                    except (ValidationError, VenueRejected):
                        pass
            else:
                engine.reconcile("p")
            check_invariants(engine, venue, accepted_checks)
        engine.reconcile("p")
        check_invariants(engine, venue, accepted_checks)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_books_always_match_the_fills_sqlite(ops):
    with tempfile.TemporaryDirectory() as tmp:
        run_sequence(ops, f"sqlite:///{Path(tmp) / 'prop.db'}", Path(tmp) / "home")


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_books_always_match_the_fills_postgres(postgres_server, ops):
    from conftest import reset_postgres

    reset_postgres(postgres_server)
    with tempfile.TemporaryDirectory() as tmp:
        run_sequence(ops, postgres_server["url"], Path(tmp) / "home")
