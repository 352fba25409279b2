"""The paper venue on its own: balances, fills, fees, partial fills,
rejections, stop triggers, price feeds and persistence."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradeguard.adapters import AdapterConfig
from tradeguard.errors import ConfigError, VenueRejected
from tradeguard.plugins.paper.exchange import PaperExchange
from tradeguard.plugins.paper.feeds import CsvFeed, RandomWalkFeed, make_feed
from tradeguard.protocols import ExchangeAdapter
from tradeguard.storage import use_database
from tradeguard.types import OrderRequest


def venue(engine, name="acct", **settings):
    config = AdapterConfig(account=name, venue="paper", settings={"price_feed": "fixed:100", **settings})
    return PaperExchange(config)


def req(side, qty, type_="market", price=None, **kw):
    return OrderRequest("acct", kw.pop("symbol", "BTC/USDT"), side, Decimal(qty), type_,
                        Decimal(price) if price else None, **kw)


@pytest.fixture
def paper(engine):
    with use_database(engine.db):
        yield venue(engine)


def test_implements_the_exchange_protocol(paper):
    assert isinstance(paper, ExchangeAdapter)
    assert paper.testnet is True and paper.simulated is True
    assert "BTC/USDT" in paper.load_markets()


def test_market_orders_fill_with_slippage_and_taker_fee(paper):
    result = paper.create_order(req("buy", "2"), "c1")
    assert result.status.value == "FILLED" and result.average_price == Decimal("100.05")
    assert result.fills[0].fee == Decimal("0.2001") and result.fills[0].taker
    balances = {b.asset: b for b in paper.fetch_balance()}
    assert balances["BTC"].free == 2
    assert balances["USDT"].free == Decimal("10000") - Decimal("200.1") - Decimal("0.2001")
    assert balances["USDT"].used == 0
    sold = paper.create_order(req("sell", "2"), "c2")
    assert sold.average_price == Decimal("99.95")


def test_limit_orders_rest_until_the_price_crosses_with_maker_fee(paper):
    resting = paper.create_order(req("buy", "1", "limit", "95"), "c1")
    assert resting.status.value == "OPEN" and resting.filled == 0
    assert {b.asset: b for b in paper.fetch_balance()}["USDT"].used > 0
    paper.set_price("BTC/USDT", "96")
    assert paper.fetch_order("BTC/USDT", resting.exchange_order_id).status.value == "OPEN"
    paper.set_price("BTC/USDT", "94.5")
    filled = paper.fetch_order("BTC/USDT", resting.exchange_order_id)
    assert filled.status.value == "FILLED" and filled.average_price == Decimal("95")
    assert filled.fills[0].taker is False and filled.fee == Decimal("0.095")
    assert {b.asset: b for b in paper.fetch_balance()}["USDT"].used == 0


def test_large_orders_fill_in_parts(engine):
    with use_database(engine.db):
        paper = venue(engine, liquidity="500")
        result = paper.create_order(req("buy", "12"), "c1")
        assert result.status.value == "PARTIALLY_FILLED" and result.filled < 12
        paper.tick()
        paper.tick()
        later = paper.fetch_order_by_client_id("BTC/USDT", "c1")
        assert later.status.value == "FILLED" and len(later.fills) >= 3
        assert sum(f.quantity for f in later.fills) == 12


def test_insufficient_balance_is_rejected(paper):
    with pytest.raises(VenueRejected) as info:
        paper.create_order(req("buy", "1000"), "c1")
    assert info.value.code == "insufficient_funds"
    with pytest.raises(VenueRejected, match="insufficient balance: 0 BTC free"):
        paper.create_order(req("sell", "1"), "c2")
    assert paper.fetch_open_orders() == []


def test_duplicate_client_order_ids_and_unknown_symbols_are_rejected(paper):
    paper.create_order(req("buy", "1"), "c1")
    with pytest.raises(VenueRejected, match="duplicate"):
        paper.create_order(req("buy", "1"), "c1")
    with pytest.raises(VenueRejected, match="unknown symbol"):
        paper.fetch_ticker("NOPE/USDT")


def test_stop_orders_trigger_when_the_price_crosses(paper):
    paper.create_order(req("buy", "1"), "c1")
    stop = paper.create_order(req("sell", "1", stop_loss=Decimal("90"), reduce_only=True), "stop")
    assert stop.status.value == "OPEN"
    paper.set_price("BTC/USDT", "91")
    assert paper.fetch_order_by_client_id("BTC/USDT", "stop").status.value == "OPEN"
    paper.set_price("BTC/USDT", "89")
    triggered = paper.fetch_order_by_client_id("BTC/USDT", "stop")
    assert triggered.status.value == "FILLED" and triggered.average_price == Decimal("89") * Decimal("0.9995")


def test_cancel_releases_the_lock(paper):
    resting = paper.create_order(req("buy", "1", "limit", "50"), "c1")
    cancelled = paper.cancel_order("BTC/USDT", resting.exchange_order_id, None)
    assert cancelled.status.value == "CANCELED"
    usdt = {b.asset: b for b in paper.fetch_balance()}["USDT"]
    assert usdt.free == Decimal("10000") and usdt.used == 0
    with pytest.raises(VenueRejected, match="canceled"):
        paper.cancel_order("BTC/USDT", resting.exchange_order_id, None)
    with pytest.raises(VenueRejected):
        paper.cancel_order("BTC/USDT", "nope", None)


def test_state_persists_for_a_new_adapter(engine):
    with use_database(engine.db):
        first = venue(engine)
        resting = first.create_order(req("buy", "1", "limit", "80"), "c1")
        second = venue(engine)  # a restarted bot
        [open_order] = second.fetch_open_orders()
        assert open_order.client_order_id == "c1" and open_order.exchange_order_id == resting.exchange_order_id
        assert second.fetch_my_trades() == []


def test_initialize_funds_a_new_book_once(engine):
    with use_database(engine.db):
        paper = venue(engine, name="funded")
        assert paper.initialize({"USDT": Decimal("123")}) is True
        assert paper.initialize({"USDT": Decimal("999")}) is False
        assert paper.balances()["USDT"]["free"] == Decimal("123")


def test_random_walk_is_deterministic_for_a_seed():
    def series(seed):
        feed, state = RandomWalkFeed(seed=seed, volatility_bp=50), {}
        return [feed.advance("BTC/USDT", state) for _ in range(20)]

    assert series(7) == series(7)
    assert series(7) != series(8)
    assert all(isinstance(p, Decimal) for p in series(7))


def test_csv_feed_steps_through_candles(tmp_path):
    path = tmp_path / "candles.csv"
    path.write_text("timestamp,open,high,low,close\n1,1,1,1,100\n2,1,1,1,101.5\n3,1,1,1,99\n")
    feed, state = CsvFeed(path), {}
    assert [feed.advance("BTC/USDT", state) for _ in range(4)] == [Decimal("100"), Decimal("101.5"), Decimal("99"),
                                                                   Decimal("99")]
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,price\n1,2\n")
    with pytest.raises(ConfigError, match="close"):
        CsvFeed(bad)
    with pytest.raises(ConfigError, match="price_feed"):
        make_feed("magic")


def test_ticker_advances_the_random_walk(engine):
    with use_database(engine.db):
        paper = PaperExchange(AdapterConfig(account="walk", venue="paper", settings={"seed": 3}))
        prices = [paper.fetch_ticker("ETH/USDT").last for _ in range(5)]
        assert len(set(prices)) > 1
        again = PaperExchange(AdapterConfig(account="walk2", venue="paper", settings={"seed": 3}))
        assert [again.fetch_ticker("ETH/USDT").last for _ in range(5)] == prices


# -- PAPER accounts on a real venue: real prices, simulated fills ------------------------------


class FakeRealVenue:
    """A 'real' venue that must never receive an order from a PAPER account."""

    name = "fakereal"
    testnet = True
    capabilities = frozenset()
    created: list = []

    def __init__(self, config):
        self.config = config

    def load_markets(self, reload=False):
        from tradeguard.types import Market

        return {"BTC/USDT": Market("BTC/USDT", "BTC", "USDT", amount_step=Decimal("0.001"),
                                   price_step=Decimal("0.1"), min_amount=Decimal("0.001"))}

    def fetch_ticker(self, symbol):
        from tradeguard.clock import utcnow
        from tradeguard.types import Ticker

        return Ticker(symbol, Decimal("199.9"), Decimal("200.1"), Decimal("200"), utcnow())

    def create_order(self, request, client_order_id):
        FakeRealVenue.created.append(client_order_id)
        raise AssertionError("a PAPER order reached a real venue")

    def close(self):
        pass


class FakeRealPlugin:
    from tradeguard.hookspecs import hookimpl

    @hookimpl
    def register_exchanges(self, register):
        register("fakereal", FakeRealVenue)


def test_paper_account_on_a_real_venue_uses_real_prices_and_simulated_fills(tmp_path, home):
    from tradeguard import Engine

    with Engine.open(f"sqlite:///{tmp_path / 'd.db'}", home=home, load_entrypoints=False,
                     plugins=[FakeRealPlugin()]) as engine:
        engine.accounts.add("dry", "fakereal", initial_capital="10000")
        order = engine.place_order("dry", "BTC/USDT", "buy", "1.2345", actor="t")
        assert order.status.value == "FILLED"
        assert order.quantity == Decimal("1.234")  # the real venue's precision
        assert order.average_fill_price == Decimal("200") * Decimal("1.0005")  # its price, paper slippage
        assert FakeRealVenue.created == []
        assert engine.accounts.get("dry").current_cash < Decimal("10000")


# -- storage: a small book row, closed orders archived in rows of their own ----------------------

from tradeguard.plugins.paper import state as paper_state  # noqa: E402
from tradeguard.storage.models import PluginState  # noqa: E402


def book_row(engine, key="account:acct"):
    """The stored text and update time of a book row."""
    sql = f"SELECT value, updated_at FROM plugin_state WHERE plugin = 'paper' AND key = {engine.db.param}"
    return tuple(engine.db.execute_sql(sql, (key,)).fetchone())


def archived_keys(key="account:acct", kind="order"):
    return [row.key for row in PluginState.select(PluginState.key).where(
        (PluginState.plugin == "paper") & PluginState.key.startswith(f"{key}/{kind}/")).order_by(PluginState.id)]


def round_trips(paper, count, start=0):
    """*count* filled market orders (buy, sell, buy …) with client ids c00000, c00001 …; their results."""
    return [paper.create_order(req("buy" if i % 2 == 0 else "sell", "1"), f"c{i:05d}")
            for i in range(start, start + count)]


def test_a_closed_order_is_found_by_exchange_and_client_id_after_it_left_the_book(engine, paper):
    filled = paper.create_order(req("buy", "1"), "c1")
    canceled = paper.create_order(req("buy", "1", "limit", "50"), "c2")
    paper.cancel_order("BTC/USDT", canceled.exchange_order_id, None)
    assert paper.store.peek()["orders"] == {}  # both closed: archived, out of the book row
    assert archived_keys() == [f"account:acct/order/{filled.exchange_order_id}",
                               f"account:acct/order/{canceled.exchange_order_id}"]
    for venue_ in (paper, venue(engine)):  # the same adapter, and a restarted bot
        by_id = venue_.fetch_order("BTC/USDT", filled.exchange_order_id)
        assert by_id.status.value == "FILLED" and by_id.client_order_id == "c1"
        assert by_id.fills == filled.fills and by_id.average_price == Decimal("100.05")
        by_client = venue_.fetch_order_by_client_id("BTC/USDT", "c2")
        assert by_client.status.value == "CANCELED" and by_client.exchange_order_id == canceled.exchange_order_id
        with pytest.raises(VenueRejected) as info:
            venue_.cancel_order("BTC/USDT", None, "c2")
        assert info.value.code == "order_closed"
    assert paper.fetch_order_by_client_id("BTC/USDT", "never") is None
    with pytest.raises(VenueRejected, match="unknown order"):
        paper.fetch_order("BTC/USDT", "nope-1")


def test_a_recently_closed_client_order_id_is_refused_as_duplicate(paper):
    paper.create_order(req("buy", "1"), "c1")
    assert paper.store.peek()["orders"] == {}
    with pytest.raises(VenueRejected) as info:
        paper.create_order(req("buy", "1"), "c1")
    assert info.value.code == "duplicate_client_order_id"
    assert paper.sent == ["c1"]


def test_fetch_my_trades_after_many_orders_returns_the_newest_trades_in_order(engine, monkeypatch):
    with use_database(engine.db):
        paper = venue(engine, liquidity="150")
        placed = round_trips(paper, 120)
        partial = paper.create_order(req("buy", "3", "limit", "100"), "partial")  # 150 USDT a pass
        paper.set_price("BTC/USDT", "101")  # no longer crosses: stays PARTIALLY_FILLED, in the book
        assert partial.status.value == "PARTIALLY_FILLED" and len(partial.fills) == 1
        expected = [f.trade_id for order in placed for f in order.fills] + [partial.fills[0].trade_id]
        trades = paper.fetch_my_trades()
        assert [t.trade_id for t in trades] == expected
        assert [t.client_order_id for t in trades[:3]] == ["c00000", "c00001", "c00002"]
        assert trades[-1].client_order_id == "partial" and trades[-1].exchange_order_id == partial.exchange_order_id
        assert [t.trade_id for t in venue(engine, liquidity="150").fetch_my_trades("BTC/USDT")] == expected
        assert paper.fetch_my_trades("ETH/USDT") == []
        assert paper.fetch_my_trades(since=trades[-1].timestamp)[-1].trade_id == expected[-1]
        monkeypatch.setattr("tradeguard.plugins.paper.exchange.KEEP_TRADES", 25)
        assert [t.trade_id for t in paper.fetch_my_trades()] == expected[-25:]


def test_the_archive_stays_bounded(engine, paper, monkeypatch):
    monkeypatch.setattr(paper_state, "KEEP_ARCHIVED_ORDERS", 20)
    monkeypatch.setattr(paper_state, "PRUNE_EVERY", 5)
    placed = round_trips(paper, 63)
    kept = archived_keys()
    assert 20 <= len(kept) < 25
    assert kept[-1] == f"account:acct/order/{placed[-1].exchange_order_id}"
    assert paper.fetch_order("BTC/USDT", placed[-20].exchange_order_id).status.value == "FILLED"
    with pytest.raises(VenueRejected, match="unknown order"):
        paper.fetch_order("BTC/USDT", placed[0].exchange_order_id)
    assert len(paper.fetch_my_trades()) == len(kept)  # one trade per kept order
    assert len(archived_keys(kind="client")) == len(kept)  # client-id rows go with their orders
    assert paper.fetch_order_by_client_id("BTC/USDT", "c00062").exchange_order_id == placed[-1].exchange_order_id
    assert paper.fetch_order_by_client_id("BTC/USDT", "c00000") is None
    other = venue(engine, name="other")  # another book's archive is not touched
    other.create_order(req("buy", "1"), "o1")
    round_trips(paper, 10, start=63)
    assert len(archived_keys("account:other")) == 1 and 20 <= len(archived_keys()) < 25


def old_order(seq, client, side, type_, qty, status, price=None, lock="0", fills=()):
    filled = sum((Decimal(t["quantity"]) for t in fills), Decimal(0))
    cost = sum((Decimal(t["quantity"]) * Decimal(t["price"]) for t in fills), Decimal(0))
    return {"id": f"old1-{seq}", "seq": seq, "client_order_id": client, "symbol": "BTC/USDT", "side": side,
            "type": type_, "price": price, "stop": None, "quantity": qty, "filled": str(filled), "cost": str(cost),
            "fee": str(sum((Decimal(t["fee"]) for t in fills), Decimal(0))), "lock": lock, "status": status,
            "reduce_only": False, "crossing": False, "fills": list(fills), "step": "0.00001",
            "created": "2026-01-02T03:04:05.000000Z"}


def old_trade(number, seq, client, side, price, qty):
    return {"trade_id": f"Pold1-{number}", "order_id": f"old1-{seq}", "client_order_id": client,
            "symbol": "BTC/USDT", "side": side, "price": price, "quantity": qty,
            "fee": str(Decimal(price) * Decimal(qty) / 1000), "fee_currency": "USDT", "fee_rate": "0.001",
            "taker": True, "timestamp": f"2026-01-02T03:04:0{number}.000000Z"}


def test_a_book_stored_in_the_old_shape_is_converted_on_load(engine):
    t1 = old_trade(1, 1, "c-old-1", "buy", "100", "1")
    t2 = old_trade(2, 2, "c-old-2", "sell", "100", "0.5")
    orders = [old_order(1, "c-old-1", "buy", "market", "1", "FILLED", fills=[t1]),
              old_order(2, "c-old-2", "sell", "market", "0.5", "FILLED", fills=[t2]),
              old_order(3, "c-old-3", "buy", "limit", "1", "OPEN", price="50", lock="50.05"),
              old_order(4, "c-old-4", "buy", "limit", "1", "CANCELED", price="40")]
    old = {"nonce": "old1", "next_order": 5, "next_trade": 3,
           "balances": {"USDT": {"free": "9899.8", "used": "50.05"}, "BTC": {"free": "0.5", "used": "0"}},
           "orders": {o["id"]: o for o in orders}, "trades": [t1, t2], "feed": {}, "prices": {"BTC/USDT": "100"}}
    with use_database(engine.db):
        PluginState.create(plugin="paper", key="account:acct", value=old)
        paper = venue(engine)
        [live] = paper.fetch_open_orders()  # the first block converts the book
        assert live.exchange_order_id == "old1-3"
        book = paper.store.peek()
        assert "trades" not in book and list(book["orders"]) == ["old1-3"]
        assert "recent" not in book
        assert archived_keys() == ["account:acct/order/old1-1", "account:acct/order/old1-2",
                                   "account:acct/order/old1-4"]
        assert archived_keys(kind="client") == ["account:acct/client/c-old-1", "account:acct/client/c-old-2",
                                                "account:acct/client/c-old-4"]
        first = paper.fetch_order("BTC/USDT", "old1-1")
        assert first.status.value == "FILLED" and first.fills[0].trade_id == "Pold1-1"
        assert paper.fetch_order_by_client_id("BTC/USDT", "c-old-4").status.value == "CANCELED"
        assert [t.trade_id for t in paper.fetch_my_trades()] == ["Pold1-1", "Pold1-2"]
        with pytest.raises(VenueRejected, match="duplicate"):
            paper.create_order(req("buy", "1"), "c-old-2")
        new = paper.create_order(req("buy", "1"), "c-new")
        assert new.exchange_order_id == "old1-5" and new.fills[0].trade_id == "Pold1-3"
        assert [t.trade_id for t in paper.fetch_my_trades()] == ["Pold1-1", "Pold1-2", "Pold1-3"]
        assert {b.asset: b.free for b in paper.fetch_balance()}["BTC"] == Decimal("1.5")


def test_the_book_row_does_not_grow_with_the_number_of_closed_orders(engine, paper):
    round_trips(paper, 120)
    text, _ = book_row(engine)
    round_trips(paper, 120, start=120)
    later, updated = book_row(engine)
    assert len(archived_keys()) == 240 and len(archived_keys(kind="client")) == 240
    assert len(later) <= len(text) + 10 and len(later) < 2_000  # only counters' digits grow
    archived = sum(len(str(row.value)) for row in PluginState.select().where(
        (PluginState.plugin == "paper") & PluginState.key.startswith("account:acct/order/")))
    assert archived > 10 * len(later)  # what the book row used to carry is in the archive rows
    paper.tick()  # a pass that changes nothing writes nothing
    paper.fetch_order_by_client_id("BTC/USDT", "c00239")
    assert book_row(engine) == (later, updated)


# -- the order hot path: what is cached or skipped must not change what callers see ----------------

import dataclasses  # noqa: E402

from tradeguard.plugins.paper import exchange as paper_exchange  # noqa: E402


def test_venue_orders_built_directly_equal_the_validated_constructors(engine, monkeypatch):
    assert paper_exchange.DIRECT_BUILD  # VenueOrder / Fill still have the fields the venue fills in
    def scenario(name):
        paper = venue(engine, name=name, liquidity="150")
        results = [paper.create_order(req("buy", "1"), "c1"), paper.create_order(req("sell", "0.5"), "c2"),
                   paper.create_order(req("buy", "3", "limit", "100"), "c3"),  # partially filled, stays live
                   paper.create_order(req("buy", "1", "limit", "50"), "c4")]  # rests
        results.append(paper.cancel_order("BTC/USDT", None, "c4"))
        results += paper.fetch_open_orders()
        results.append(paper.fetch_order_by_client_id("BTC/USDT", "c1"))
        return results
    with use_database(engine.db):
        direct = scenario("direct")
        monkeypatch.setattr(paper_exchange, "DIRECT_BUILD", False)
        constructed = scenario("constructed")
    assert len(direct) == len(constructed) >= 6
    for fast, slow in zip(direct, constructed):
        assert type(fast) is type(slow)
        # the constructor's own conversions leave a directly built order as it is, field by field
        assert repr(dataclasses.replace(fast)) == repr(fast)
        for fill in fast.fills:
            assert repr(dataclasses.replace(fill)) == repr(fill) and type(fill.side) is type(slow.side)
        same = {f.name for f in dataclasses.fields(fast)} - {"exchange_order_id", "fills", "timestamp"}
        assert {n: getattr(fast, n) for n in same} == {n: getattr(slow, n) for n in same}
        assert [(f.price, f.quantity, f.fee, f.fee_rate, f.taker, f.side) for f in fast.fills] == \
            [(f.price, f.quantity, f.fee, f.fee_rate, f.taker, f.side) for f in slow.fills]


def test_what_the_constructors_refuse_is_still_refused(engine):
    from tradeguard.errors import ValidationError

    with use_database(engine.db):
        paper = venue(engine, maker_fee="-0.001")  # a maker rebate: a negative fee, which a Fill refuses
        resting = paper.create_order(req("buy", "1", "limit", "95"), "c1")
        paper.set_price("BTC/USDT", "94")
        with pytest.raises(ValidationError, match="fee"):
            paper.fetch_order("BTC/USDT", resting.exchange_order_id)


def test_another_adapter_s_writes_are_seen_by_the_cached_book(engine):
    with use_database(engine.db):
        first, second = venue(engine), venue(engine)  # two processes sharing the book
        first.create_order(req("buy", "1"), "c1")
        second.create_order(req("buy", "2"), "c2")
        assert {b.asset: b.free for b in first.fetch_balance()}["BTC"] == 3
        first.set_price("BTC/USDT", "120")
        assert second.fetch_ticker("BTC/USDT").last == 120  # the read-only ticker path compares the text too
        with pytest.raises(VenueRejected) as info:  # the other adapter archived c2: a point query finds it
            first.create_order(req("buy", "1"), "c2")
        assert info.value.code == "duplicate_client_order_id"
        resting = second.create_order(req("buy", "1", "limit", "50"), "c3")
        with pytest.raises(VenueRejected, match="duplicate"):  # live in the book the other adapter wrote
            first.create_order(req("buy", "1"), "c3")
        assert first.fetch_order_by_client_id("BTC/USDT", "c3").exchange_order_id == resting.exchange_order_id


def test_a_refused_order_leaves_the_book_and_the_durability_setting_as_they_were(engine):
    with use_database(engine.db):
        paper = venue(engine)
        paper.create_order(req("buy", "1"), "c1")
        text, updated = book_row(engine)
        with pytest.raises(VenueRejected):
            paper.create_order(req("buy", "1"), "c1")
        with pytest.raises(VenueRejected):
            paper.create_order(req("buy", "1000"), "c2")
        assert book_row(engine) == (text, updated)
        assert {b.asset: b.free for b in paper.fetch_balance()}["BTC"] == 1  # the cached book was not kept
        if engine.db.__class__.__name__.startswith("Sqlite"):
            assert engine.db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2  # FULL again


def test_sqlite_relaxes_synchronous_only_for_the_book_s_own_commit(sqlite_engine):
    seen = []

    class Spy(paper_exchange.make_feed("fixed:100").__class__):
        def price(self, symbol, state):
            seen.append(sqlite_engine.db.execute_sql("PRAGMA synchronous").fetchone()[0])
            return super().price(symbol, state)

    with use_database(sqlite_engine.db):
        paper = PaperExchange(AdapterConfig(account="acct", venue="paper", settings={}), feed=Spy(default=Decimal(100)))
        paper.create_order(req("buy", "1"), "c1")
        assert seen and set(seen) == {1}  # NORMAL inside the book's transaction
        assert sqlite_engine.db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2
        with sqlite_engine.db.atomic():  # inside a caller's transaction: just part of it, nothing relaxed
            paper.create_order(req("buy", "1"), "c2")
        assert seen[-1] == 2
        assert archived_keys()[-1] == "account:acct/order/" + paper.store.peek()["nonce"] + "-2"
