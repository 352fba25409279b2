"""The replay harness drives the REAL ccxt.binance / ccxt.coinbase offline.

Every test here goes through ccxt's own sign() / parse_*() / handle_errors();
only Exchange.fetch (the socket) is replaced.  The exception classes asserted
below are what ccxt 4.5.x actually raises for the recorded venue payloads --
several are not the "obvious" ones (see the comments and
tests/fixtures/ccxt/README.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import ccxt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import ccxt_replay as cr

BTC_MKT_ORDER_ID = "28457211"  # order_market_filled.json
BTC_LIMIT_ORDER_ID = "28457300"  # order_limit_new.json / order_partially_filled.json
CB_LIMIT_ORDER_ID = "52cfe5e2-0b29-4c19-a245-a6a773de5030"
CB_MARKET_ORDER_ID = "01b6e467-b659-432f-9490-c7cefe949564"


# --------------------------------------------------------------------------- #
# fixtures
# --------------------------------------------------------------------------- #


@pytest.fixture
def bn():
    transport = cr.ReplayTransport.for_venue("binance")
    ex = cr.make_binance(transport)
    ex.load_markets()
    transport.clear()
    return ex, transport


@pytest.fixture
def cb():
    transport = cr.ReplayTransport.for_venue("coinbase")
    ex = cr.make_coinbase(transport)
    ex.load_markets()
    transport.clear()
    return ex, transport


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


# --------------------------------------------------------------------------- #
# binance
# --------------------------------------------------------------------------- #


def test_binance_load_markets_spot_only_one_request():
    transport = cr.ReplayTransport.for_venue("binance")
    ex = cr.make_binance(transport)
    markets = ex.load_markets()

    assert [(r.method, r.path) for r in transport.requests] == [("GET", "/api/v3/exchangeInfo")]
    assert set(markets) == {"BTC/USDT", "ETH/USDT"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] and btc["active"]
    assert btc["precision"]["amount"] == 1e-05  # LOT_SIZE stepSize (TICK_SIZE precision mode)
    assert btc["precision"]["price"] == 0.01  # PRICE_FILTER tickSize
    assert btc["limits"]["amount"] == {"min": 1e-05, "max": 9000.0}
    assert btc["limits"]["cost"]["min"] == 5.0  # NOTIONAL minNotional
    assert btc["limits"]["market"]["max"] == 76.95768083  # MARKET_LOT_SIZE
    assert markets["ETH/USDT"]["precision"]["amount"] == 0.0001


def test_binance_default_options_hit_sapi_and_unknown_route_names_url():
    # Without BINANCE_SPOT_ONLY_OPTIONS, load_markets first calls the signed
    # sapi capital/config/getall (fetchCurrencies) -- not in the route table.
    transport = cr.ReplayTransport.for_venue("binance")
    ex = ccxt.binance({"apiKey": "k", "secret": "s", "enableRateLimit": False})
    transport.install(ex)
    with pytest.raises(AssertionError, match=r"no route for GET https://api\.binance\.com/sapi/v1/capital/config/getall\?"):
        ex.load_markets()
    assert transport.unmatched and transport.unmatched[0].path == "/sapi/v1/capital/config/getall"


def test_binance_fetch_ticker(bn):
    ex, transport = bn
    ticker = ex.fetch_ticker("BTC/USDT")
    req = transport.last()
    assert (req.method, req.path, req.query) == ("GET", "/api/v3/ticker/24hr", {"symbol": "BTCUSDT"})
    assert req.header("X-MBX-APIKEY") is None  # public endpoint: unsigned
    assert ticker["symbol"] == "BTC/USDT"
    assert ticker["last"] == 73369.84 and ticker["bid"] == 73369.83 and ticker["ask"] == 73369.84
    assert ticker["timestamp"] == 1710328245391


def test_binance_fetch_balance_signed(bn):
    ex, transport = bn
    balance = ex.fetch_balance()
    req = transport.last("GET", "/api/v3/account$")
    assert req.header("X-MBX-APIKEY") == "test-binance-api-key"
    assert {"timestamp", "recvWindow", "signature"} <= set(req.query)
    assert balance["BTC"] == {"free": 0.5, "used": 0.01, "total": 0.51}
    assert balance["USDT"]["free"] == 10000.0 and balance["USDT"]["used"] == 250.0


def test_binance_market_order_request_is_signed_and_parsed(bn):
    ex, transport = bn
    order = ex.create_order("BTC/USDT", "market", "buy", 0.002, params={"newClientOrderId": "tg-abc"})

    req = transport.last()
    assert (req.method, req.path) == ("POST", "/api/v3/order")
    assert req.header("X-MBX-APIKEY") == "test-binance-api-key"
    assert req.header("Content-Type") == "application/x-www-form-urlencoded"
    # ccxt binance puts POST parameters in the form body, not the URL query
    assert req.query == {}
    p = req.params
    assert p["newClientOrderId"] == "tg-abc"
    assert p["symbol"] == "BTCUSDT" and p["side"] == "BUY" and p["type"] == "MARKET"
    assert p["quantity"] == "0.002" and p["newOrderRespType"] == "FULL"
    # real HMAC-SHA256 over the body that precedes "&signature="
    signed_part, signature = req.body.rsplit("&signature=", 1)
    expected = hmac.new(b"test-binance-secret", signed_part.encode(), hashlib.sha256).hexdigest()
    assert signature == expected

    assert order["id"] == BTC_MKT_ORDER_ID and order["clientOrderId"] == "tg-abc"
    assert order["status"] == "closed" and order["filled"] == 0.002 and order["remaining"] == 0.0
    assert order["average"] == pytest.approx(73369.85)
    assert order["cost"] == pytest.approx(146.7397)
    assert order["fee"] == {"currency": "BTC", "cost": 2e-06}
    assert len(order["trades"]) == 2


def test_binance_without_client_id_ccxt_injects_broker_id(bn):
    ex, transport = bn
    ex.create_order("BTC/USDT", "market", "buy", 0.002)
    assert transport.last().params["newClientOrderId"].startswith("x-")  # ccxt broker prefix


def test_binance_limit_order_new(bn):
    ex, transport = bn
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.002, 60000, params={"newClientOrderId": "tg-limit-1"})
    p = transport.last().params
    assert p["type"] == "LIMIT" and p["price"] == "60000" and p["timeInForce"] == "GTC"
    assert order["id"] == BTC_LIMIT_ORDER_ID and order["status"] == "open"
    assert order["filled"] == 0.0 and order["remaining"] == 0.002 and order["price"] == 60000.0


def test_binance_fetch_order_by_client_order_id(bn):
    ex, transport = bn
    order = ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": "tg-abc"})
    req = transport.last()
    assert (req.method, req.path) == ("GET", "/api/v3/order")
    assert req.query["origClientOrderId"] == "tg-abc" and "orderId" not in req.query
    assert "signature" in req.query
    assert order["id"] == BTC_MKT_ORDER_ID and order["status"] == "closed" and order["filled"] == 0.002


def test_binance_partially_filled_order(bn):
    ex, transport = bn
    order = ex.fetch_order(BTC_LIMIT_ORDER_ID, "BTC/USDT")
    assert transport.last().query["orderId"] == BTC_LIMIT_ORDER_ID
    assert order["status"] == "open"  # PARTIALLY_FILLED maps to 'open'
    assert order["info"]["status"] == "PARTIALLY_FILLED"
    assert order["filled"] == 0.0008 and order["remaining"] == pytest.approx(0.0012)


def test_binance_cancel_open_orders_and_my_trades(bn):
    ex, transport = bn
    canceled = ex.cancel_order(BTC_LIMIT_ORDER_ID, "BTC/USDT")
    assert transport.last().method == "DELETE" and transport.last().query["orderId"] == BTC_LIMIT_ORDER_ID
    assert canceled["status"] == "canceled"

    open_orders = ex.fetch_open_orders("BTC/USDT")
    assert [(o["id"], o["status"]) for o in open_orders] == [(BTC_LIMIT_ORDER_ID, "open")]

    trades = ex.fetch_my_trades("BTC/USDT")
    assert [t["order"] for t in trades] == [BTC_MKT_ORDER_ID, BTC_MKT_ORDER_ID]
    assert sum(t["amount"] for t in trades) == pytest.approx(0.002)
    assert trades[0]["fee"] == {"currency": "BTC", "cost": 1.5e-06}


@pytest.mark.parametrize(
    "fixture, exc",
    [
        ("error_insufficient_balance", ccxt.InsufficientFunds),  # msg match beats code -2010 (InvalidOrder)
        ("error_lot_size", ccxt.InvalidOrder),  # 'LOT_SIZE' in body
        ("error_notional", ccxt.BadRequest),  # -1013 code map (BadRequest is NOT an InvalidOrder)
        ("error_invalid_quantity", ccxt.BadRequest),
        ("error_invalid_symbol", ccxt.BadSymbol),
        ("error_api_key_format", ccxt.AuthenticationError),
        ("error_invalid_api_key", ccxt.AuthenticationError),  # fresh exchange, see next test
        ("error_too_many_requests", ccxt.DDoSProtection),  # any 429/418 -> DDoSProtection
        ("error_ip_banned", ccxt.DDoSProtection),
        ("error_order_does_not_exist", ccxt.OrderNotFound),
        ("error_timestamp", ccxt.InvalidNonce),
        ("error_signature", ccxt.AuthenticationError),
        ("error_server_busy", ccxt.OperationFailed),
    ],
)
def test_binance_error_payloads_map_to_ccxt_exceptions(fixture, exc):
    transport = cr.ReplayTransport.for_venue("binance")
    ex = cr.make_binance(transport)
    ex.load_markets()
    transport.add("POST", r"^/api/v3/order$", fixture=fixture)
    with pytest.raises(exc) as info:
        ex.create_order("BTC/USDT", "market", "buy", 0.002)
    assert type(info.value) is exc  # exactly this class, not a subclass


def test_binance_429_is_not_rate_limit_exceeded():
    # RateLimitExceeded subclasses DDoSProtection, not the reverse: code that
    # only catches RateLimitExceeded misses binance 429s.
    transport = cr.ReplayTransport.for_venue("binance")
    ex = cr.make_binance(transport)
    transport.add("GET", r"^/api/v3/ticker/24hr$", fixture="error_too_many_requests")
    ex.load_markets()
    with pytest.raises(ccxt.DDoSProtection) as info:
        ex.fetch_ticker("BTC/USDT")
    assert not isinstance(info.value, ccxt.RateLimitExceeded)
    assert ex.last_response_headers["Retry-After"] == "37"


def test_binance_2015_after_successful_auth_becomes_ddos_protection(bn):
    ex, transport = bn
    ex.fetch_balance()  # sets options['hasAlreadyAuthenticatedSuccessfully']
    transport.add("POST", r"^/api/v3/order$", fixture="error_invalid_api_key")
    with pytest.raises(ccxt.DDoSProtection):
        ex.create_order("BTC/USDT", "market", "buy", 0.002)


def test_binance_cancel_unknown_order(bn):
    ex, _ = bn
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order("1", "BTC/USDT")  # default route -> -2011


def test_binance_timeout(bn):
    ex, transport = bn
    transport.timeout("POST", r"^/api/v3/order$")
    with pytest.raises(ccxt.RequestTimeout, match="binance POST https://api.binance.com/api/v3/order"):
        ex.create_order("BTC/USDT", "market", "buy", 0.002, params={"newClientOrderId": "tg-abc"})
    # times=1: the next call falls through to the recorded fill
    assert ex.create_order("BTC/USDT", "market", "buy", 0.002)["status"] == "closed"


def test_binance_timeout_then_lookup_finds_order(bn):
    ex, transport = bn
    transport.add_sequence("POST", r"^/api/v3/order$", [cr.TIMEOUT, "order_market_filled"])
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order("BTC/USDT", "market", "buy", 0.002, params={"newClientOrderId": "tg-abc"})
    sent = transport.last("POST").params["newClientOrderId"]

    found = ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": sent})
    assert found["clientOrderId"] == sent == "tg-abc" and found["status"] == "closed"
    assert [(r.method, r.path) for r in transport.requests] == [("POST", "/api/v3/order"), ("GET", "/api/v3/order")]


def test_binance_sequence_not_found_then_found(bn):
    ex, transport = bn
    transport.add_sequence(
        "GET", r"^/api/v3/order$", ["error_order_does_not_exist", "order_query_filled"],
        query={"origClientOrderId": "tg-abc"},
    )
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": "tg-abc"})
    assert ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": "tg-abc"})["status"] == "closed"
    # the last response repeats
    assert ex.fetch_order(None, "BTC/USDT", params={"origClientOrderId": "tg-abc"})["status"] == "closed"


def test_add_with_inline_body_and_callable(bn):
    ex, transport = bn
    body = cr.load_body("binance", "ticker_24hr_btcusdt")
    body["lastPrice"] = "1.00000000"
    transport.add("GET", r"^/api/v3/ticker/24hr$", 200, body)
    assert ex.fetch_ticker("BTC/USDT")["last"] == 1.0

    seen = []

    def answer(request):
        seen.append(request.query["symbol"])
        return cr.Reply(400, {"code": -1121, "msg": "Invalid symbol."})

    transport.add("GET", r"^/api/v3/ticker/24hr$", body=answer)
    with pytest.raises(ccxt.BadSymbol):
        ex.fetch_ticker("ETH/USDT")
    assert seen == ["ETHUSDT"]


def test_binance_async_support():
    async def main():
        transport = cr.ReplayTransport.for_venue("binance")
        ex = cr.make_binance(transport, async_=True)
        try:
            await ex.load_markets()
            ticker = await ex.fetch_ticker("BTC/USDT")
            transport.add("POST", r"^/api/v3/order$", fixture="error_insufficient_balance")
            with pytest.raises(ccxt.InsufficientFunds):
                await ex.create_order("BTC/USDT", "market", "buy", 0.002)
            return ticker["last"]
        finally:
            await ex.close()

    assert asyncio.run(main()) == 73369.84


def test_binance_sandbox_urls():
    ex = ccxt.binance()
    assert ex.urls["test"]["public"] == "https://testnet.binance.vision/api/v3"
    assert ex.urls["test"]["fapiPublic"] == "https://testnet.binancefuture.com/fapi/v1"
    ex.set_sandbox_mode(True)
    assert ex.urls["api"]["public"] == "https://testnet.binance.vision/api/v3"
    assert ex.options["sandboxMode"] is True
    assert "sapi" not in ex.urls["api"]  # testnet has no sapi; fetch_currencies returns {} there


# --------------------------------------------------------------------------- #
# coinbase (Advanced Trade)
# --------------------------------------------------------------------------- #


def test_coinbase_load_markets_requests_and_parsing():
    transport = cr.ReplayTransport.for_venue("coinbase")
    ex = cr.make_coinbase(transport)
    markets = ex.load_markets()

    calls = [(r.method, r.path, r.query) for r in transport.requests]
    assert calls == [
        ("GET", "/api/v3/brokerage/market/products", {}),
        ("GET", "/api/v3/brokerage/transaction_summary", {}),  # only when credentials are set
        ("GET", "/api/v3/brokerage/market/products", {"product_type": "FUTURE"}),  # always
    ]
    assert transport.requests[0].header("Authorization") is None  # public
    assert transport.requests[1].header("Authorization").startswith("Bearer ")
    assert not transport.unmatched

    assert set(markets) == {"BTC/USD", "ETH/USD", "BTC/USDC"}
    btc = markets["BTC/USD"]
    assert btc["id"] == "BTC-USD" and btc["spot"] and btc["active"]
    assert btc["precision"] == {"amount": 1e-08, "price": 0.01}
    assert btc["limits"]["amount"] == {"min": 1e-08, "max": 3400.0}
    assert btc["limits"]["cost"] == {"min": 1.0, "max": 150000000.0}
    assert (btc["maker"], btc["taker"]) == (0.006, 0.012)  # from transaction_summary fee_tier


def test_coinbase_default_load_markets_fetches_currencies():
    # Without has['fetchCurrencies']=False ccxt first calls 3 v2 currency endpoints.
    transport = cr.ReplayTransport.for_venue("coinbase")
    ex = ccxt.coinbase({"enableRateLimit": False})
    transport.install(ex)
    with pytest.raises(AssertionError, match=r"no route for GET https://api\.coinbase\.com/v2/currencies"):
        ex.load_markets()


def test_coinbase_fetch_ticker_public(cb):
    ex, transport = cb
    ticker = ex.fetch_ticker("BTC/USD")
    req = transport.last()
    assert (req.path, req.query) == ("/api/v3/brokerage/market/products/BTC-USD/ticker", {"limit": "1"})
    assert req.header("Authorization") is None
    assert (ticker["last"], ticker["bid"], ticker["ask"]) == (66363.03, 66367.58, 66367.59)


def test_coinbase_fetch_balance_v2_default_and_v3(cb):
    ex, transport = cb
    bal = ex.fetch_balance()
    assert (transport.last().path, transport.last().query) == ("/v2/accounts", {"limit": "250"})
    assert bal["BTC"] == {"free": 0.5, "used": 0.0, "total": 0.5}  # v2: no holds
    assert bal["USD"]["total"] == 10000.0

    bal3 = ex.fetch_balance({"v3": True})
    assert transport.last().path == "/api/v3/brokerage/accounts"
    assert bal3["USD"] == {"free": 9939.7, "used": 60.3, "total": 10000.0}
    assert bal3["BTC"]["used"] == 0.01


def test_coinbase_create_order_body_and_es256_jwt(cb):
    ex, transport = cb
    order = ex.create_order("BTC/USD", "limit", "buy", 0.001, 60000, params={"client_order_id": "tg-cb-1"})

    req = transport.last()
    assert (req.method, req.path) == ("POST", "/api/v3/brokerage/orders")
    assert req.json == {
        "client_order_id": "tg-cb-1",
        "product_id": "BTC-USD",
        "side": "BUY",
        "order_configuration": {"limit_limit_gtc": {"base_size": "0.001", "limit_price": "60000", "post_only": False}},
    }
    auth = req.header("Authorization")
    assert auth.startswith("Bearer ")
    header_b64, payload_b64, sig_b64 = auth[len("Bearer "):].split(".")
    header = json.loads(_b64url(header_b64))
    payload = json.loads(_b64url(payload_b64))
    assert header["alg"] == "ES256" and header["kid"] == ex.apiKey and header["nonce"]
    assert payload["sub"] == ex.apiKey
    assert payload["uri"] == "POST api.coinbase.com/api/v3/brokerage/orders"
    assert payload["exp"] - payload["nbf"] == 120
    # the signature really is ES256 by the test key
    raw = _b64url(sig_b64)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public_key = serialization.load_pem_private_key(ex.secret.encode(), None).public_key()
    public_key.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))

    # ccxt parses only success_response: no status/amount until fetch_order
    assert order["id"] == CB_LIMIT_ORDER_ID and order["clientOrderId"] == "tg-cb-1"
    assert order["symbol"] == "BTC/USD" and order["side"] == "buy" and order["status"] is None


def test_coinbase_unified_client_order_id_is_dropped(cb):
    # ccxt coinbase omits the unified 'clientOrderId' param and sends its own
    # 'ccxt-<uuid>'; only the raw 'client_order_id' param reaches the venue.
    ex, transport = cb
    ex.create_order("BTC/USD", "limit", "buy", 0.001, 60000, params={"clientOrderId": "tg-cb-2"})
    assert transport.last().json["client_order_id"].startswith("ccxt-")


def test_coinbase_market_buy_sizes_in_quote(cb):
    ex, transport = cb
    with pytest.raises(ccxt.InvalidOrder):  # market buy needs a price (or cost) by default
        ex.create_order("BTC/USD", "market", "buy", 0.001)
    ex.create_order("BTC/USD", "market", "buy", 0.001, 66000, params={"client_order_id": "tg-cb-mkt"})
    assert transport.last().json["order_configuration"] == {"market_market_ioc": {"quote_size": "66"}}
    # with createMarketBuyOrderRequiresPrice=False the *amount* is the quote cost:
    ex.create_order("BTC/USD", "market", "buy", 0.001, None, params={"createMarketBuyOrderRequiresPrice": False})
    assert transport.last().json["order_configuration"] == {"market_market_ioc": {"quote_size": "0"}}
    ex.create_order("BTC/USD", "market", "sell", 0.001)
    assert transport.last().json["order_configuration"] == {"market_market_ioc": {"base_size": "0.001"}}


def test_coinbase_fetch_orders_cancel_and_fills(cb):
    ex, transport = cb
    o = ex.fetch_order(CB_LIMIT_ORDER_ID, "BTC/USD")
    assert transport.last().path == f"/api/v3/brokerage/orders/historical/{CB_LIMIT_ORDER_ID}"
    assert (o["status"], o["filled"], o["remaining"], o["price"]) == ("open", 0.0, 0.001, 60000.0)
    assert o["clientOrderId"] == "tg-cb-1"

    filled = ex.fetch_order(CB_MARKET_ORDER_ID, "BTC/USD")
    assert (filled["status"], filled["filled"], filled["average"], filled["type"]) == ("closed", 0.001, 66367.59, "market")

    transport.add("GET", rf"/orders/historical/{CB_LIMIT_ORDER_ID}$", fixture="order_get_partially_filled")
    partial = ex.fetch_order(CB_LIMIT_ORDER_ID, "BTC/USD")
    assert (partial["status"], partial["filled"], partial["remaining"]) == ("open", 0.0004, 0.0006)

    open_orders = ex.fetch_open_orders("BTC/USD")
    q = transport.last().query
    assert q["order_status"] == "OPEN" and q["product_id"] == "BTC-USD"
    assert [(x["id"], x["clientOrderId"]) for x in open_orders] == [(CB_LIMIT_ORDER_ID, "tg-cb-1")]

    canceled = ex.cancel_order(CB_LIMIT_ORDER_ID, "BTC/USD")
    assert transport.last().json == {"order_ids": [CB_LIMIT_ORDER_ID]}
    assert canceled["id"] == CB_LIMIT_ORDER_ID and canceled["status"] is None  # ccxt sets no status

    trades = ex.fetch_my_trades("BTC/USD")
    assert [(t["order"], t["amount"], t["fee"]["cost"]) for t in trades] == [(CB_MARKET_ORDER_ID, 0.001, 0.79641108)]


@pytest.mark.parametrize(
    "fixture, exc",
    [
        # HTTP 200 {"success": false, "error_response": {..."preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND"}}
        ("order_create_insufficient_fund", ccxt.InsufficientFunds),
        # same without preview_failure_reason: handle_errors raises a plain ExchangeError
        ("order_create_insufficient_fund_no_preview_reason", ccxt.ExchangeError),
        ("error_unauthorized", ccxt.AuthenticationError),  # 401 text/plain -> httpExceptions
        ("error_rate_limit", ccxt.RateLimitExceeded),
        ("error_invalid_argument", ccxt.BadRequest),
    ],
)
def test_coinbase_create_order_errors(cb, fixture, exc):
    ex, transport = cb
    transport.add("POST", r"^/api/v3/brokerage/orders$", fixture=fixture)
    with pytest.raises(exc) as info:
        ex.create_order("BTC/USD", "limit", "buy", 0.001, 60000, params={"client_order_id": "tg-cb-1"})
    assert type(info.value) is exc


def test_coinbase_not_found_and_failed_cancel_mapping(cb):
    ex, transport = cb
    # Python ccxt's broad pattern reads 'order with self orderID was not found'
    # (transpiled 'this' -> 'self'), so the venue message never matches.
    with pytest.raises(ccxt.ExchangeError) as info:
        ex.fetch_order("00000000-0000-0000-0000-000000000000", "BTC/USD")
    assert type(info.value) is ccxt.ExchangeError and not isinstance(info.value, ccxt.OrderNotFound)

    transport.add("POST", r"/orders/batch_cancel$", fixture="cancel_unknown_order")
    with pytest.raises(ccxt.BadRequest):  # any success=false cancel -> BadRequest
        ex.cancel_order("00000000-0000-0000-0000-000000000000")


def test_coinbase_timeout_then_lookup_by_client_order_id(cb):
    ex, transport = cb
    transport.timeout("POST", r"^/api/v3/brokerage/orders$")
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order("BTC/USD", "limit", "buy", 0.001, 60000, params={"client_order_id": "tg-cb-1"})
    sent = transport.last("POST").json["client_order_id"]
    matches = [o for o in ex.fetch_open_orders("BTC/USD") if o["clientOrderId"] == sent]
    assert [o["id"] for o in matches] == [CB_LIMIT_ORDER_ID]


def test_coinbase_sandbox_mode_behaviour():
    # coinbase (Advanced Trade) has urls['test'] = None: set_sandbox_mode(True)
    # crashes inside Exchange.clone(None) with a TypeError (not NotSupported).
    ex = ccxt.coinbase()
    assert ex.urls["test"] is None
    with pytest.raises(TypeError):
        ex.set_sandbox_mode(True)
    assert ex.urls["api"] == {"rest": "https://api.coinbase.com"} and not ex.isSandboxModeEnabled

    cbx = ccxt.coinbaseexchange()
    cbx.set_sandbox_mode(True)
    assert cbx.urls["api"]["private"] == "https://api-public.sandbox.exchange.coinbase.com"
