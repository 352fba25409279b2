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
