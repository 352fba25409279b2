"""Properties of the books that reports and replay rebuild, over random fill sequences.

* replay's ledger (`tradeguard.reporting.ledger`) books positions exactly as the
  order path does (`tradeguard.orders.ledger.apply_position_change`), so replay
  can only report real differences;
* a report's total PnL is its realized PnL, less fees, plus the unrealized PnL
  of what is still open — equity accounting and PnL accounting agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import decimal
import itertools
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeguard.reporting.ledger import CONTEXT, Ledger

_names = itertools.count(1)

fills = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal("5"), places=3),
        st.decimals(min_value=Decimal("1"), max_value=Decimal("1000"), places=2),
        st.decimals(min_value=Decimal("0"), max_value=Decimal("2"), places=4),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(fills)
def test_replay_books_like_the_order_path(sequence):
    from tradeguard.orders.ledger import apply_position_change
    from tradeguard.storage.models import Position

    stored = Position(quantity=Decimal(0), average_cost=Decimal(0), realized_pnl=Decimal(0),
                      unrealized_pnl=Decimal(0))
    ledger = Ledger()
    for side, quantity, price, _ in sequence:
        signed = quantity if side == "buy" else -quantity
        realized = apply_position_change(stored, signed, price)
        effect = ledger.apply("BTC/USDT", side, quantity, price)
        assert effect.realized_pnl == realized
    book = ledger.book("BTC/USDT")
    assert (book.quantity, book.average_cost, book.realized_pnl) == (
        stored.quantity, stored.average_cost, stored.realized_pnl)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(sequence=fills)
def test_total_pnl_is_realized_less_fees_plus_unrealized(sqlite_engine, sequence):
    from report_helpers import fill

    engine = sqlite_engine
    name = f"p{next(_names)}"  # the engine is shared by the examples: a new account each time
    account = engine.accounts.add(name, "paper", initial_capital="100000")
    ledger = Ledger()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index, (side, quantity, price, fee) in enumerate(sequence):
        effect = ledger.apply("BTC/USDT", side, quantity, price, fee, "USDT")
        fill(engine, account, start + timedelta(hours=index), side, str(quantity), str(price), fee=str(fee),
             realized=str(effect.realized_pnl))
    s = engine.reports.report(name).summary
    # exact up to the rounding of average costs in a 60-digit context (so add in one, too)
    with decimal.localcontext(CONTEXT):
        assert abs(s["total_pnl"] - (s["realized_pnl"] - s["fees"] + s["unrealized_pnl"])) < Decimal("1e-50")
    # every fill's stored PnL agrees with replay (no position rows were written here, hence position notes only)
    assert all(d["kind"] == "position" for d in engine.reports.replay(name).differences)
