"""The order path (`engine.place_order`) through the real ccxt.binance adapter.

A create that times out may or may not have reached the venue. The order
path looks the order up by its client order id: if the venue has it, that
is the order (never a second one); if not, it is sent again under the same
client order id.
"""

from __future__ import annotations

import base64
import time
from decimal import Decimal

import pytest

import ccxt_replay as cr
import ccxt_venue_helpers as h
from tradeguard import Engine
from tradeguard.errors import VenueRejected
from tradeguard.plugins.ccxt_venue import clear_market_cache
from tradeguard.valuation import clear_price_cache
from tradeguard.storage.models import Order, Trade
from tradeguard.types import OrderStatus

MASTER_KEY = "base64:" + base64.b64encode(b"o" * 32).decode()


@pytest.fixture
def live(tmp_path, home):
    clear_market_cache()
    clear_price_cache()
    with Engine.open(f"sqlite:///{tmp_path / 'tg.db'}", home=home, master_key=MASTER_KEY, load_entrypoints=False) as engine:
        engine.accounts.add("live", "binance", mode="live", mainnet=True)
        engine.accounts.set("live", trading_enabled=True, require_confirmation=False)
        engine.vault.set_credentials("live", {"api_key": "test-binance-api-key", "api_secret": "test-binance-secret"})
        engine.orders.retry_backoff = 0
        transport = h.install(engine, "live", "binance")
        # the balance risk rule needs the venue's balance: sync first (an account with no history)
        transport.add("GET", r"^/api/v3/openOrders$", body=[], times=1)
        transport.add("GET", r"^/api/v3/myTrades$", body=[], times=2)
        [synced] = engine.sync("live")
        assert synced.ok, synced.error
        transport.clear()
        yield engine, transport
    clear_market_cache()
    clear_price_cache()


def _query_answer(request: cr.RecordedRequest) -> dict:
    """Binance's answer for the order the lookup asks about: filled, under the asked client id."""
    body = cr.load_body("binance", "order_query_filled")
    body["clientOrderId"] = request.params["origClientOrderId"]
    return body


def _recent_trades(request: cr.RecordedRequest) -> list:
    """The order's two fills, stamped now (ccxt drops trades older than the `since` asked for)."""
    now = int(time.time() * 1000)
    return [trade | {"time": now} for trade in cr.load_body("binance", "my_trades")]


def test_timeout_then_lookup_finds_the_order_already_placed_no_duplicate(live):
    engine, t = live
    t.timeout("POST", r"^/api/v3/order$")  # the venue got it, the answer was lost
    t.add("GET", r"^/api/v3/order$", body=_query_answer, query={"origClientOrderId": r"tg-.*"})
    t.add("GET", r"^/api/v3/myTrades$", body=_recent_trades)

    order = engine.place_order("live", "BTC/USDT", "buy", "0.002")

    posts = t.find("POST", "/api/v3/order")
    assert len(posts) == 1  # sent once, never twice
    lookup = t.last("GET", "/api/v3/order")
    assert lookup.params["origClientOrderId"] == order.client_order_id == posts[0].params["newClientOrderId"]
    order = Order.get_by_id(order.id)
    assert order.status is OrderStatus.FILLED and order.exchange_order_id == "28457211"
    assert order.filled_quantity == Decimal("0.002")
    trades = list(Trade.select().where(Trade.order == order.id))
    assert sorted(tr.exchange_trade_id for tr in trades) == ["3479476927", "3479476928"]
    assert {tr.fee_currency for tr in trades} == {"BTC"} and all(tr.fee_rate == Decimal("0.001") for tr in trades)


def test_timeout_then_not_found_resends_under_the_same_client_id(live):
    engine, t = live
    t.timeout("POST", r"^/api/v3/order$")  # lost before the venue; the lookup answers -2013

    order = engine.place_order("live", "BTC/USDT", "buy", "0.002")

    posts = t.find("POST", "/api/v3/order")
    assert len(posts) == 2
    assert posts[0].params["newClientOrderId"] == posts[1].params["newClientOrderId"] == order.client_order_id
    assert Order.get_by_id(order.id).status is OrderStatus.FILLED


def test_insufficient_balance_is_a_rejected_order_with_the_venue_message(live):
    engine, t = live
    t.add("POST", r"^/api/v3/order$", fixture="error_insufficient_balance")
    with pytest.raises(VenueRejected, match="insufficient balance"):
        engine.place_order("live", "BTC/USDT", "buy", "0.002")
    order = Order.get()
    assert order.status is OrderStatus.REJECTED and order.error_code == "-2010"
    assert len(t.find("POST", "/api/v3/order")) == 1
