"""tradeguard's ccxt adapter driving the real ccxt.binance / ccxt.coinbase offline.

Every request below is built and signed by ccxt and answered from recorded
venue responses (tests/fixtures/ccxt); the assertions are on the requests
ccxt sent and on the tradeguard values that came back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal

import ccxt
import pytest

import ccxt_replay as cr
import ccxt_venue_helpers as h
from tradeguard.errors import ConfigError, CredentialsError, NotFound, ValidationError, VenueRejected, VenueUnavailable
from tradeguard.plugins.binance import BinanceExchange
from tradeguard.plugins.ccxt_venue import VenueRateLimited, clear_market_cache
from tradeguard.plugins.coinbase import CoinbaseExchange, CoinbaseExchangeApi
from tradeguard.types import OrderRequest, OrderStatus, Side

BTC_MKT_ORDER_ID = "28457211"
BTC_LIMIT_ORDER_ID = "28457300"
CB_LIMIT_ORDER_ID = "52cfe5e2-0b29-4c19-a245-a6a773de5030"


@pytest.fixture(autouse=True)
def fresh_market_cache():
    clear_market_cache()
    yield
    clear_market_cache()


def market_buy(qty="0.002", symbol="BTC/USDT"):
    return OrderRequest("main", symbol, "buy", qty)


def limit_buy(qty="0.002", price="60000", symbol="BTC/USDT"):
    return OrderRequest("main", symbol, "buy", qty, type="limit", price=price)


def _binance_signature_ok(req) -> bool:
    payload = req.body if req.method == "POST" else req.url.split("?", 1)[1]
    signed, signature = payload.rsplit("&signature=", 1)
    return signature == hmac.new(b"test-binance-secret", signed.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- #
# markets, tickers, balances (Decimal all the way)
# --------------------------------------------------------------------------- #


def test_binance_markets_are_decimal_and_cached_per_process():
    adapter, t = h.binance()
    markets = adapter.load_markets()
    btc = markets["BTC/USDT"]
    assert btc.amount_step == Decimal("0.00001") and btc.price_step == Decimal("0.01")
    assert btc.min_amount == Decimal("0.00001") and btc.min_notional == Decimal("5")
    assert all(isinstance(v, Decimal) for v in (btc.amount_step, btc.price_step, btc.min_amount, btc.min_notional))
    assert [r.path for r in t.requests] == ["/api/v3/exchangeInfo"]

    # a second account on the same venue gets the markets without a request
    other, t2 = h.binance(account="other")
    assert other.market("ETH/USDT").amount_step == Decimal("0.0001")
    assert t2.requests == []
    # a private call does not make ccxt load them again behind the cache's back
    other.fetch_balance()
    assert [r.path for r in t2.requests] == ["/api/v3/account"]

    other.load_markets(reload=True)
    assert [r.path for r in t2.requests][-1] == "/api/v3/exchangeInfo"


def test_unknown_symbol_is_a_clear_error_without_a_request():
    adapter, t = h.binance()
    adapter.load_markets()
    t.clear()
    with pytest.raises(ValidationError, match="binance has no market 'DOGE/EUR'"):
        adapter.create_order(market_buy(symbol="DOGE/EUR"), "tg-1")
    assert t.requests == []


def test_binance_ticker_and_balance_are_exact_decimals():
    adapter, t = h.binance()
    ticker = adapter.fetch_ticker("BTC/USDT")
    assert (ticker.bid, ticker.ask, ticker.last) == (Decimal("73369.83"), Decimal("73369.84"), Decimal("73369.84"))
    balances = {b.asset: b for b in adapter.fetch_balance()}
    assert balances["BTC"].free == Decimal("0.5") and balances["BTC"].used == Decimal("0.01")
    assert balances["USDT"].total == Decimal("10250")
    assert "BNB" not in balances  # zero holdings are left out
    req = t.last("GET", "/api/v3/account")
    assert req.header("X-MBX-APIKEY") == "test-binance-api-key" and _binance_signature_ok(req)


def test_coinbase_markets_balance_ticker():
    adapter, t = h.coinbase()
    btc = adapter.market("BTC/USD")
    assert btc.amount_step == Decimal("1E-8") and btc.min_notional == Decimal("1")
    balances = {b.asset: b for b in adapter.fetch_balance()}
    assert balances["BTC"].free == Decimal("0.49") and balances["BTC"].used == Decimal("0.01")
    assert t.last("GET", "/api/v3/brokerage/accounts").header("Authorization").startswith("Bearer ")
    ticker = adapter.fetch_ticker("BTC/USD")
    assert ticker.ask == Decimal("66367.59") and ticker.bid == Decimal("66367.58")


# --------------------------------------------------------------------------- #
# orders: client order ids, fills, fees
# --------------------------------------------------------------------------- #


def test_binance_market_order_sends_client_id_and_returns_fills_with_fees():
    adapter, t = h.binance()
    order = adapter.create_order(market_buy(), "tg-abc")
    req = t.last("POST", "/api/v3/order")
    assert req.params["newClientOrderId"] == "tg-abc"
    assert req.params["type"] == "MARKET" and req.params["quantity"] == "0.002" and req.params["side"] == "BUY"
    assert req.header("X-MBX-APIKEY") == "test-binance-api-key" and _binance_signature_ok(req)
    assert order.status is OrderStatus.FILLED and order.client_order_id == "tg-abc"
    assert order.exchange_order_id == BTC_MKT_ORDER_ID
    assert order.filled == Decimal("0.002") and order.average_price == Decimal("73369.85")
    assert [f.trade_id for f in order.fills] == ["3479476927", "3479476928"]
    first = order.fills[0]
    assert first.fee == Decimal("0.0000015") and first.fee_currency == "BTC" and first.fee_rate == Decimal("0.001")
    assert order.fee == Decimal("0.000002") and order.fee_currency == "BTC"


def test_binance_limit_order_and_partial_fill():
    adapter, t = h.binance()
    order = adapter.create_order(limit_buy(), "tg-limit-1")
    req = t.last("POST", "/api/v3/order")
    assert req.params["price"] == "60000" and req.params["timeInForce"] == "GTC"
    assert req.params["newClientOrderId"] == "tg-limit-1"
    assert order.status is OrderStatus.OPEN and order.price == Decimal("60000")
    partial = adapter.fetch_order("BTC/USDT", BTC_LIMIT_ORDER_ID)
    assert partial.status is OrderStatus.PARTIALLY_FILLED
    assert partial.filled == Decimal("0.0008") and partial.quantity == Decimal("0.002")


def test_binance_cancel_and_cancel_of_an_unknown_order():
    adapter, t = h.binance()
    canceled = adapter.cancel_order("BTC/USDT", BTC_LIMIT_ORDER_ID, None)
    assert canceled.status is OrderStatus.CANCELED
    assert canceled.client_order_id == "tg-limit-1"  # the order's id, not the cancel request's
    assert t.last("DELETE", "/api/v3/order").params["orderId"] == BTC_LIMIT_ORDER_ID

    by_client = adapter.cancel_order("BTC/USDT", None, "tg-limit-1")
    assert by_client.status is OrderStatus.CANCELED
    assert t.last("DELETE", "/api/v3/order").params["origClientOrderId"] == "tg-limit-1"

    with pytest.raises(VenueRejected) as info:
        adapter.cancel_order("BTC/USDT", "999", None)  # -2011 Unknown order sent, and no such order
    assert info.value.code == "order_not_found"


def test_binance_fetch_by_client_id_found_and_not_found():
    adapter, t = h.binance()
    found = adapter.fetch_order_by_client_id("BTC/USDT", "tg-abc")
    assert found.status is OrderStatus.FILLED and found.exchange_order_id == BTC_MKT_ORDER_ID
    assert t.last("GET", "/api/v3/order").params["origClientOrderId"] == "tg-abc"
    assert adapter.fetch_order_by_client_id("BTC/USDT", "tg-never-sent") is None  # -2013
    with pytest.raises(NotFound):
        adapter.fetch_order("BTC/USDT", "424242")


def test_binance_my_trades_and_open_orders():
    adapter, t = h.binance()
    fills = adapter.fetch_my_trades("BTC/USDT")
    assert [(f.trade_id, f.quantity, f.side) for f in fills] == [
        ("3479476927", Decimal("0.0015"), Side.BUY), ("3479476928", Decimal("0.0005"), Side.BUY)]
    assert fills[0].exchange_order_id == BTC_MKT_ORDER_ID and fills[0].taker
    assert fills[0].fee_rate == Decimal("0.001")
    with pytest.raises(ValidationError, match="per symbol"):
        adapter.fetch_my_trades()
    open_orders = adapter.fetch_open_orders()  # all symbols: no ccxt warning-error
    assert [o.client_order_id for o in open_orders] == ["tg-limit-1"]
    assert "symbol" not in t.last("GET", "/api/v3/openOrders").params


def test_client_order_id_length_and_amount_step_are_checked_before_sending():
    adapter, t = h.binance()
    adapter.load_markets()
    t.clear()
    with pytest.raises(ValidationError, match="1 to 36 characters"):
        adapter.create_order(market_buy(), "x" * 37)
    with pytest.raises(VenueRejected, match="not a multiple") as info:
        adapter.create_order(market_buy(qty="0.000015"), "tg-step")  # ccxt would silently truncate it
    assert info.value.code == "amount_step"
    assert t.requests == []


def test_coinbase_limit_order_sends_raw_client_order_id_and_fetches_state():
    adapter, t = h.coinbase()
    order = adapter.create_order(limit_buy(qty="0.001", symbol="BTC/USD"), "tg-cb-1")
    post = t.last("POST", "/api/v3/brokerage/orders")
    assert post.json["client_order_id"] == "tg-cb-1"  # not ccxt's own "ccxt-<uuid>"
    assert post.json["order_configuration"]["limit_limit_gtc"] == {
        "base_size": "0.001", "limit_price": "60000", "post_only": False}
    header, payload, _ = post.header("Authorization").split(" ", 1)[1].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["uri"] == "POST api.coinbase.com/api/v3/brokerage/orders"
    # create answers with ids only: the adapter read the order back
    assert t.last("GET").path == f"/api/v3/brokerage/orders/historical/{CB_LIMIT_ORDER_ID}"
    assert order.status is OrderStatus.OPEN and order.quantity == Decimal("0.001") and order.price == Decimal("60000")


def test_coinbase_market_buy_is_sent_as_quote_size_from_the_ask():
    adapter, t = h.coinbase()
    t.add("POST", r"^/api/v3/brokerage/orders$", body=lambda req: {
        "success": True, "order_id": "01b6e467-b659-432f-9490-c7cefe949564",
        "success_response": {"order_id": "01b6e467-b659-432f-9490-c7cefe949564", "product_id": "BTC-USD",
                             "side": "BUY", "client_order_id": req.json["client_order_id"]}})
    order = adapter.create_order(market_buy(qty="0.001", symbol="BTC/USD"), "tg-cb-mkt")
    post = t.last("POST", "/api/v3/brokerage/orders")
    assert post.json["order_configuration"] == {"market_market_ioc": {"quote_size": "66.36"}}  # 0.001 x ask 66367.59
    assert order.status is OrderStatus.FILLED and order.filled == Decimal("0.001")


def test_coinbase_fetch_by_client_id_cancel_and_fills():
    adapter, t = h.coinbase()
    found = adapter.fetch_order_by_client_id("BTC/USD", "tg-cb-1")
    assert found.exchange_order_id == CB_LIMIT_ORDER_ID
    assert adapter.fetch_order_by_client_id("BTC/USD", "tg-never-sent") is None
    cancelled = cr.load_body("coinbase", "order_get_open")
    cancelled["order"]["status"] = "CANCELLED"
    t.add("GET", rf"^/api/v3/brokerage/orders/historical/{CB_LIMIT_ORDER_ID}$", body=cancelled)
    order = adapter.cancel_order("BTC/USD", CB_LIMIT_ORDER_ID, None)
    assert t.last("POST", "batch_cancel").json == {"order_ids": [CB_LIMIT_ORDER_ID]}
    assert order.status is OrderStatus.CANCELED
    fill = adapter.fetch_my_trades("BTC/USD")[0]
    assert fill.fee == Decimal("0.79641108") and fill.fee_currency == "USD" and fill.fee_rate == Decimal("0.012")
    with pytest.raises(NotFound):
        adapter.fetch_order("BTC/USD", "00000000-dead-beef-0000-000000000000")


# --------------------------------------------------------------------------- #
# errors: the venue's real payloads
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("fixture, code, text", [
    ("error_insufficient_balance", "-2010", "Account has insufficient balance for requested action."),
    ("error_lot_size", "-1013", "Filter failure: LOT_SIZE"),
    ("error_notional", "-1013", "Filter failure: NOTIONAL"),
    ("error_invalid_symbol", "-1121", "Invalid symbol."),
])
def test_binance_definite_rejections_carry_the_venue_code_and_message(fixture, code, text):
    adapter, t = h.binance()
    t.add("POST", r"^/api/v3/order$", fixture=fixture)
    with pytest.raises(VenueRejected) as info:
        adapter.create_order(market_buy(), "tg-rej")
    assert info.value.code == code
    assert text in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("fixture", ["error_api_key_format", "error_invalid_api_key", "error_signature"])
def test_binance_key_errors_name_the_account_and_suggest_creds_check(fixture):
    adapter, t = h.binance(account="alice")
    t.add("GET", r"^/api/v3/account$", fixture=fixture)
    with pytest.raises(CredentialsError) as info:
        adapter.fetch_balance()
    message = str(info.value)
    assert "account alice" in message and "tradeguard creds check alice" in message
    assert "test-binance-secret" not in message and "test-binance-api-key" not in message


def test_binance_invalid_key_after_a_successful_call_is_still_a_credentials_error():
    # once a signed call succeeded ccxt raises DDoSProtection for -2015: the venue code decides
    adapter, t = h.binance(account="alice")
    adapter.fetch_balance()
    t.add("GET", r"^/api/v3/account$", fixture="error_invalid_api_key")
    with pytest.raises(CredentialsError, match="-2015"):
        adapter.fetch_balance()


def _too_many(retry_after: str | None) -> cr.Reply:
    reply = cr.load_fixture("binance", "error_too_many_requests")
    reply.headers = {k: v for k, v in (reply.headers or {}).items() if k.lower() != "retry-after"}
    if retry_after is not None:
        reply.headers["Retry-After"] = retry_after
    return reply


def test_binance_429_backs_off_using_retry_after_then_succeeds():
    sleeps: list[float] = []
    adapter, t = h.binance(sleeps=sleeps)
    adapter.load_markets()
    t.add_sequence("GET", r"^/api/v3/account$", [_too_many("2"), _too_many(None), "account"])
    balances = adapter.fetch_balance()
    assert balances and len(t.find("GET", "/api/v3/account")) == 3
    assert sleeps == [2.0, 1.0]  # the venue's Retry-After, then exponential backoff (0.5 s x 2)


def test_binance_rate_limit_gives_up_after_the_configured_retries_or_a_long_retry_after():
    sleeps: list[float] = []
    adapter, t = h.binance(sleeps=sleeps, rate_limit_retries=1)
    t.add("GET", r"^/api/v3/account$", body=lambda req: _too_many("1"))
    with pytest.raises(VenueRateLimited) as info:
        adapter.fetch_balance()
    assert isinstance(info.value, VenueUnavailable) and sleeps == [1.0]
    sleeps.clear()
    t.add("GET", r"^/api/v3/account$", fixture="error_too_many_requests")  # Retry-After: 37 is too long to wait
    with pytest.raises(VenueRateLimited) as info:
        adapter.fetch_balance()
    assert sleeps == [] and info.value.retry_after == 37


def test_binance_ip_ban_is_not_retried():
    sleeps: list[float] = []
    adapter, t = h.binance(sleeps=sleeps)
    t.add("GET", r"^/api/v3/account$", fixture="error_ip_banned")
    with pytest.raises(VenueRateLimited, match="banned") as info:
        adapter.fetch_balance()
    assert info.value.banned and sleeps == []


@pytest.mark.parametrize("response", ["timeout", "network_error", "error_server_busy", "error_timestamp"])
def test_binance_unknown_outcomes_are_venue_unavailable(response):
    adapter, t = h.binance()
    adapter.load_markets()
    if response == "timeout":
        t.timeout("POST", r"^/api/v3/order$")
    elif response == "network_error":
        t.add("POST", r"^/api/v3/order$", network_error=True)
    else:
        t.add("POST", r"^/api/v3/order$", fixture=response)
    with pytest.raises(VenueUnavailable) as info:
        adapter.create_order(market_buy(), "tg-unknown")
    assert not isinstance(info.value, VenueRejected)
    assert "signature=" not in str(info.value)  # no signed query strings in messages


def test_binance_timeout_then_lookup_finds_the_order_already_placed():
    """A create that times out may have reached the venue: the lookup by client id finds it, no resend."""
    adapter, t = h.binance()
    t.timeout("POST", r"^/api/v3/order$")
    with pytest.raises(VenueUnavailable):
        adapter.create_order(market_buy(), "tg-abc")
    found = adapter.fetch_order_by_client_id("BTC/USDT", "tg-abc")
    assert found is not None and found.status is OrderStatus.FILLED and found.exchange_order_id == BTC_MKT_ORDER_ID
    assert len(t.find("POST", "/api/v3/order")) == 1


@pytest.mark.parametrize("fixture", ["order_create_insufficient_fund", "order_create_insufficient_fund_no_preview_reason"])
def test_coinbase_insufficient_funds_is_a_rejection_even_as_http_200(fixture):
    adapter, t = h.coinbase()
    t.add("POST", r"^/api/v3/brokerage/orders$", fixture=fixture)
    with pytest.raises(VenueRejected) as info:
        adapter.create_order(limit_buy(qty="0.001", symbol="BTC/USD"), "tg-cb-poor")
    assert "Insufficient balance" in str(info.value) or "INSUFFICIENT_FUND" in str(info.value)
    assert info.value.code in ("INSUFFICIENT_FUND", "InsufficientFunds")


def test_coinbase_unauthorized_and_rate_limit_and_bad_argument():
    sleeps: list[float] = []
    adapter, t = h.coinbase(sleeps=sleeps, account="cb1")
    adapter.load_markets()
    t.add("GET", r"^/api/v3/brokerage/accounts$", fixture="error_unauthorized", times=1)
    with pytest.raises(CredentialsError, match="tradeguard creds check cb1"):
        adapter.fetch_balance()
    t.add("GET", r"^/api/v3/brokerage/accounts$", fixture="error_rate_limit", times=1)
    assert adapter.fetch_balance()
    assert len(sleeps) == 1
    t.add("POST", r"^/api/v3/brokerage/orders$", fixture="error_invalid_argument")
    with pytest.raises(VenueRejected):
        adapter.create_order(limit_buy(qty="0.001", symbol="BTC/USD"), "tg-cb-bad")


# --------------------------------------------------------------------------- #
# network: sandbox, endpoint override, secrets
# --------------------------------------------------------------------------- #


def test_binance_testnet_uses_the_sandbox_hosts():
    adapter = BinanceExchange(h.config("binance", testnet=True))
    hosts = {url.split("/")[2] for url in adapter.client.urls["api"].values() if isinstance(url, str)}
    assert "api.binance.com" not in hosts and "testnet.binance.vision" in hosts
    t = cr.ReplayTransport.for_venue("binance")
    t.install(adapter.client)
    adapter.fetch_balance()
    assert {r.host for r in t.requests} == {"testnet.binance.vision"}


def test_coinbase_testnet_is_refused_clearly_never_mainnet():
    with pytest.raises(ConfigError, match="no sandbox.*coinbaseexchange.*--mainnet"):
        CoinbaseExchange(h.config("coinbase", testnet=True))
    sandbox = CoinbaseExchangeApi(h.config("coinbaseexchange", testnet=True,
                                           secrets={"api_key": "k", "api_secret": "c2VjcmV0", "passphrase": "p"}))
    assert sandbox.client.urls["api"]["private"] == "https://api-public.sandbox.exchange.coinbase.com"


def test_testnet_account_cannot_point_at_the_production_host():
    adapter = BinanceExchange(h.config("binance", testnet=True, api_base_url="https://api.binance.com"))
    with pytest.raises(ConfigError, match="production host api.binance.com"):
        adapter.client


def test_endpoint_override_keeps_signing_and_tls_verification():
    prefixed = BinanceExchange(h.config("binance", api_base_url="https://eu-proxy.example.com/binance"))
    assert prefixed.client.urls["api"]["private"] == "https://eu-proxy.example.com/binance/api/v3"
    assert prefixed.client.urls["api"]["fapiPrivate"] == "https://eu-proxy.example.com/binance/fapi/v1"
    adapter = BinanceExchange(h.config("binance", api_base_url="https://eu-proxy.example.com"))
    client = adapter.client
    assert client.verify is True and client.validateServerSsl is True
    t = cr.ReplayTransport.for_venue("binance")
    t.install(client)
    adapter.fetch_balance()
    req = t.last("GET", "/api/v3/account")
    assert req.host == "eu-proxy.example.com" and _binance_signature_ok(req)
    assert req.header("X-MBX-APIKEY") == "test-binance-api-key"
    # a coinbase testnet account may use a local test server (never the venue)
    local = CoinbaseExchange(h.config("coinbase", testnet=True, api_base_url="http://127.0.0.1:8999"))
    assert local.client.urls["api"]["rest"] == "http://127.0.0.1:8999"


def test_plain_http_is_refused_for_a_remote_host():
    with pytest.raises(ConfigError, match="plain http is only allowed for a loopback host"):
        BinanceExchange(h.config("binance", api_base_url="http://proxy.example.com"))


def test_secrets_are_read_only_when_the_client_is_built_and_never_shown():
    cfg = h.config("binance", account="alice")
    adapter = BinanceExchange(cfg)
    assert not cfg.secrets.loaded  # building the adapter read no secret
    text = repr(adapter) + str(adapter)
    assert adapter.client.apiKey == "test-binance-api-key" and cfg.secrets.loaded
    for shown in (repr(adapter), str(adapter), repr(adapter.client), repr(cfg), text):
        assert "test-binance-secret" not in shown and "test-binance-api-key" not in shown
    assert "alice" in repr(adapter) and "mainnet" in repr(adapter)
    adapter.close()
    assert adapter._client is None


def test_a_float_from_ccxt_is_converted_through_its_shortest_repr():
    from tradeguard.plugins.ccxt_venue.convert import dec

    assert dec(0.1) == Decimal("0.1") and dec("0.10000000") == Decimal("0.1")
    assert dec(None) is None
    with pytest.raises(Exception, match="cannot read"):
        dec("abc")


def test_plugins_register_binance_and_coinbase_with_secret_settings():
    from tradeguard.plugin_manager import PluginManager

    pm = PluginManager(load_entrypoints=False)
    for venue, secrets in (("binance", {"api_key", "api_secret"}), ("coinbase", {"api_key", "api_secret"}),
                           ("coinbaseexchange", {"api_key", "api_secret", "passphrase"})):
        registration = pm.exchanges.get(venue)
        assert {s.name for s in registration.settings if s.secret} == secrets
        assert {"market_type", "timeout_ms", "rate_limit"} <= {s.name for s in registration.settings if not s.secret}
    assert ccxt.__version__
