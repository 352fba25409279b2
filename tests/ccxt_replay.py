"""Offline replay of recorded venue HTTP responses for the *real* ccxt classes.

A :class:`ReplayTransport` replaces ``exchange.fetch`` -- the one method through
which every ccxt REST call goes -- so that ``ccxt.binance`` / ``ccxt.coinbase``
still build and sign their requests (``sign()``), parse the responses
(``parse_order`` ...) and map venue errors to ccxt exceptions
(``handle_errors`` / ``handle_http_status_code``) exactly as they do online.
Only the socket is gone: each request is recorded in ``transport.requests`` and
answered from a route table.

Typical use::

    import ccxt_replay as cr

    transport = cr.ReplayTransport.for_venue("binance")      # default routes
    ex = cr.make_binance(transport)                          # real ccxt.binance
    ex.load_markets()
    transport.add("POST", r"^/api/v3/order$", 400,
                  cr.load_body("binance", "error_insufficient_balance"))
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "market", "buy", 0.001)

Route precedence: routes added later win (so ``add()`` overrides the fixture
defaults).  A route with ``times=n`` is used n times and then falls through to
the next matching route.  A route with several responses (``add_sequence``)
answers them in order and repeats the last one.

Fixtures live in ``tests/fixtures/ccxt/<venue>/``: one JSON file per response
(``{"status": ..., "headers": {...}, "body": ...}`` plus ``_source`` notes) and
a ``routes.json`` default route table.  See ``tests/fixtures/ccxt/README.md``.
"""

from __future__ import annotations

import copy
import http
import inspect
import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

import ccxt
from requests.structures import CaseInsensitiveDict

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures" / "ccxt"

__all__ = [
    "FIXTURES_DIR",
    "BINANCE_SPOT_ONLY_OPTIONS",
    "COINBASE_CHEAP_CONFIG",
    "NetworkFailure",
    "RecordedRequest",
    "Reply",
    "ReplayTransport",
    "Route",
    "TIMEOUT",
    "Timeout",
    "coinbase_test_credentials",
    "generate_ec_p256_pem",
    "load_body",
    "load_fixture",
    "make_binance",
    "make_coinbase",
]

# --------------------------------------------------------------------------- #
# cheap-load_markets settings
# --------------------------------------------------------------------------- #

#: binance: only GET /api/v3/exchangeInfo during load_markets (no sapi capital
#: config / margin pairs, no fapi / dapi exchangeInfo).
BINANCE_SPOT_ONLY_OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},  # default ['spot', 'linear', 'inverse']
    "fetchMargins": False,  # default True -> sapi margin/allPairs + isolated/allPairs
    "fetchCurrencies": False,  # default True -> sapi capital/config/getall (signed)
}

#: coinbase: skip the 3 v2 currency calls that load_markets makes through
#: fetch_currencies().  load_markets still calls market/products (spot),
#: market/products?product_type=FUTURE and -- with credentials --
#: brokerage/transaction_summary; those are in the default coinbase routes.
COINBASE_CHEAP_CONFIG: dict[str, Any] = {"has": {"fetchCurrencies": False}}


# --------------------------------------------------------------------------- #
# responses
# --------------------------------------------------------------------------- #


@dataclass
class Reply:
    """An HTTP answer.  ``body`` is JSON-encoded unless ``text`` is given."""

    status: int = 200
    body: Any = None
    text: str | None = None
    headers: dict[str, str] | None = None
    reason: str | None = None

    def render(self) -> tuple[int, str, CaseInsensitiveDict, str]:
        if self.text is not None:
            text = self.text
            default_ct = "text/plain; charset=utf-8"
        elif self.body is None:
            text = ""
            default_ct = "application/json;charset=UTF-8"
        else:
            text = json.dumps(self.body)
            default_ct = "application/json;charset=UTF-8"
        headers = CaseInsensitiveDict({"Content-Type": default_ct})
        headers.update(self.headers or {})
        reason = self.reason
        if reason is None:
            try:
                reason = http.HTTPStatus(self.status).phrase
            except ValueError:
                reason = ""
        return self.status, reason, headers, text


@dataclass
class Timeout:
    """Simulate ``requests`` raising ``Timeout``: ccxt turns it into RequestTimeout."""

    def raise_for(self, exchange, method: str, url: str):
        # the same message ccxt's Exchange.fetch builds
        raise ccxt.RequestTimeout(" ".join([exchange.id, method, url]))


@dataclass
class NetworkFailure:
    """Simulate a connection error (ccxt raises NetworkError)."""

    message: str = "Connection aborted."

    def raise_for(self, exchange, method: str, url: str):
        raise ccxt.NetworkError(" ".join([exchange.id, method, url]))


TIMEOUT = Timeout()

ResponseSpec = Reply | Timeout | NetworkFailure | Callable[["RecordedRequest"], Any]


@dataclass
class RecordedRequest:
    method: str
    url: str
    path: str
    host: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: str | None
    json: Any = None  # body parsed as JSON (coinbase POSTs)
    form: dict[str, Any] = field(default_factory=dict)  # body parsed as x-www-form-urlencoded (binance POSTs)
    route: "Route | None" = None  # None: no route matched

    @property
    def params(self) -> dict[str, Any]:
        """Query-string and form-body parameters merged (binance signs either)."""
        merged = dict(self.query)
        merged.update(self.form)
        return merged

    def header(self, name: str, default=None):
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return default

    def __repr__(self) -> str:  # short, for assertion messages
        return f"<{self.method} {self.url}>"


@dataclass
class Route:
    method: str
    path: str  # regex, re.search()ed against the URL path (e.g. /api/v3/order)
    responses: list[ResponseSpec]
    query: dict[str, str] | None = None  # every key must be present and fullmatch the regex value
    host: str | None = None  # optional regex searched in the host
    times: int | None = None  # None: unlimited
    name: str | None = None
    calls: int = 0

    def __post_init__(self):
        self.method = self.method.upper()
        self._path_re = re.compile(self.path)
        self._host_re = re.compile(self.host) if self.host else None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.calls >= self.times

    def matches(self, method: str, host: str, path: str, params: dict[str, Any]) -> bool:
        if self.exhausted:
            return False
        if self.method not in ("*", method.upper()):
            return False
        if not self._path_re.search(path):
            return False
        if self._host_re and not self._host_re.search(host):
            return False
        for key, pattern in (self.query or {}).items():
            if key not in params or not re.fullmatch(str(pattern), str(params[key])):
                return False
        return True

    def next_response(self) -> ResponseSpec:
        idx = min(self.calls, len(self.responses) - 1)
        self.calls += 1
        return self.responses[idx]


# --------------------------------------------------------------------------- #
# fixtures
# --------------------------------------------------------------------------- #


def _fixture_path(venue: str, name: str) -> Path:
    p = FIXTURES_DIR / venue / (name if name.endswith(".json") else name + ".json")
    if not p.is_file():
        raise FileNotFoundError(f"no ccxt fixture {p}")
    return p


def load_fixture(venue: str, name: str) -> Reply:
    """A fixture file as a :class:`Reply` (fresh copy; safe to mutate)."""
    data = json.loads(_fixture_path(venue, name).read_text())
    if "text" in data:
        return Reply(status=data.get("status", 200), text=data["text"], headers=data.get("headers"))
    return Reply(status=data.get("status", 200), body=data.get("body"), headers=data.get("headers"))


def load_body(venue: str, name: str) -> Any:
    """Just the JSON body of a fixture (fresh copy)."""
    reply = load_fixture(venue, name)
    return reply.body if reply.text is None else reply.text


def _spec_from_json(venue: str, item: Any) -> ResponseSpec:
    if item == "timeout":
        return Timeout()
    if item == "network_error":
        return NetworkFailure()
    if isinstance(item, str):
        return load_fixture(venue, item)
    raise ValueError(f"bad response spec in routes.json: {item!r}")


# --------------------------------------------------------------------------- #
# the transport
# --------------------------------------------------------------------------- #


class ReplayTransport:
    """Route table + request log that stands in for the network."""

    def __init__(self, routes: Iterable[Route] = (), venue: str | None = None):
        self.venue = venue
        self.routes: list[Route] = list(routes)
        self.requests: list[RecordedRequest] = []
        self.unmatched: list[RecordedRequest] = []
        self.exchange = None

    # ---- construction -------------------------------------------------- #
    @classmethod
    def for_venue(cls, venue: str) -> "ReplayTransport":
        """Transport pre-loaded with ``fixtures/ccxt/<venue>/routes.json``."""
        table = json.loads(_fixture_path(venue, "routes").read_text())
        t = cls(venue=venue)
        for r in table["routes"]:
            responses = r.get("sequence") or [r["fixture"]]
            t.routes.append(
                Route(
                    method=r["method"],
                    path=r["path"],
                    responses=[_spec_from_json(venue, x) for x in responses],
                    query=r.get("query"),
                    host=r.get("host"),
                    name=r.get("fixture") or r.get("name"),
                )
            )
        return t

    # ---- route management ---------------------------------------------- #
    def add(
        self,
        method: str,
        path_regex: str,
        status: int = 200,
        body: Any = None,
        *,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        fixture: str | None = None,
        timeout: bool = False,
        network_error: bool = False,
        query: dict[str, str] | None = None,
        host: str | None = None,
        times: int | None = None,
    ) -> Route:
        """Add a route that takes precedence over every existing one.

        Exactly one of: ``body``/``text`` (with ``status``), ``fixture`` (a file
        name in this transport's venue dir, or ``"venue/name"``), ``timeout=True``
        or ``network_error=True``.  ``body`` may also be a callable taking the
        :class:`RecordedRequest` and returning a body, a :class:`Reply` or raising.
        """
        if timeout:
            spec: ResponseSpec = Timeout()
        elif network_error:
            spec = NetworkFailure()
        elif fixture is not None:
            spec = self._fixture(fixture)
        elif callable(body):
            fn = body

            def spec(request, _fn=fn, _status=status, _headers=headers):  # noqa: E306
                out = _fn(request)
                return out if isinstance(out, (Reply, Timeout, NetworkFailure)) else Reply(_status, out, headers=_headers)
        else:
            spec = Reply(status=status, body=body, text=text, headers=headers)
        return self._push(Route(method, path_regex, [spec], query=query, host=host, times=times))

    def add_sequence(
        self,
        method: str,
        path_regex: str,
        responses: list[Any],
        *,
        query: dict[str, str] | None = None,
        host: str | None = None,
    ) -> Route:
        """Answer successive calls with ``responses`` (last one repeats).

        Items: :class:`Reply`, ``TIMEOUT`` / :class:`Timeout`,
        :class:`NetworkFailure`, a fixture name (str), or ``(status, body)``.
        """
        specs: list[ResponseSpec] = []
        for item in responses:
            if isinstance(item, (Reply, Timeout, NetworkFailure)) or callable(item):
                specs.append(item)
            elif item == "timeout":
                specs.append(Timeout())
            elif isinstance(item, str):
                specs.append(self._fixture(item))
            elif isinstance(item, tuple) and len(item) == 2:
                specs.append(Reply(item[0], item[1]))
            else:
                raise TypeError(f"unsupported response spec {item!r}")
        return self._push(Route(method, path_regex, specs, query=query, host=host))

    def timeout(self, method: str, path_regex: str, *, times: int | None = 1, **kw) -> Route:
        """Shortcut: the next ``times`` matching calls time out (then fall through)."""
        return self.add(method, path_regex, timeout=True, times=times, **kw)

    def _fixture(self, name: str) -> Reply:
        if "/" in name:
            venue, name = name.split("/", 1)
        else:
            venue = self.venue
        if venue is None:
            raise ValueError("fixture name needs a venue: 'binance/name'")
        return load_fixture(venue, name)

    def _push(self, route: Route) -> Route:
        self.routes.insert(0, route)
        return route

    # ---- request log helpers ------------------------------------------- #
    def find(self, method: str | None = None, path_regex: str | None = None) -> list[RecordedRequest]:
        out = []
        for r in self.requests:
            if method and r.method != method.upper():
                continue
            if path_regex and not re.search(path_regex, r.path):
                continue
            out.append(r)
        return out

    def last(self, method: str | None = None, path_regex: str | None = None) -> RecordedRequest:
        found = self.find(method, path_regex)
        assert found, f"no recorded request matches {method} {path_regex}; got {self.requests}"
        return found[-1]

    def clear(self) -> None:
        self.requests.clear()
        self.unmatched.clear()

    # ---- installation ---------------------------------------------------- #
    def install(self, exchange):
        """Replace ``exchange.fetch`` (sync or ccxt.async_support) with the replay."""
        self.exchange = exchange
        transport = self
        if inspect.iscoroutinefunction(type(exchange).fetch):

            async def fetch(self, url, method="GET", headers=None, body=None):
                return transport._handle(self, url, method, headers, body)

        else:

            def fetch(self, url, method="GET", headers=None, body=None):
                return transport._handle(self, url, method, headers, body)

        exchange.fetch = types.MethodType(fetch, exchange)
        return exchange

    # ---- the fake HTTP round trip ---------------------------------------- #
    def _record(self, exchange, url, method, headers, body) -> RecordedRequest:
        parts = urlsplit(url)
        query: dict[str, Any] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k in query:
                query[k] = query[k] if isinstance(query[k], list) else [query[k]]
                query[k].append(v)
            else:
                query[k] = v
        parsed_json, form = None, {}
        if isinstance(body, (bytes, bytearray)):
            body = body.decode()
        if body:
            ctype = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
            try:
                parsed_json = json.loads(body)
            except (ValueError, TypeError):
                parsed_json = None
            if parsed_json is None and ("urlencoded" in ctype or "=" in body):
                form = dict(parse_qsl(body, keep_blank_values=True))
        return RecordedRequest(
            method=method.upper(),
            url=url,
            path=parts.path,
            host=parts.netloc,
            query=query,
            headers=dict(headers or {}),
            body=body,
            json=parsed_json,
            form=form,
        )

    def _match(self, req: RecordedRequest) -> Route | None:
        for route in self.routes:
            if route.matches(req.method, req.host, req.path, req.params):
                return route
        return None

    def _handle(self, exchange, url, method="GET", headers=None, body=None):
        # What ccxt's Exchange.fetch does before the socket: merge session /
        # exchange headers, User-Agent, Accept-Encoding.
        request_headers = exchange.prepare_request_headers(headers)
        req = self._record(exchange, url, method, request_headers, body)
        self.requests.append(req)
        route = self._match(req)
        if route is None:
            self.unmatched.append(req)
            known = "\n  ".join(f"{r.method} {r.path} {r.query or ''}" for r in self.routes)
            raise AssertionError(
                f"ReplayTransport: no route for {req.method} {url}\n"
                f"  body: {body!r}\n  routes:\n  {known}"
            )
        req.route = route
        spec = route.next_response()
        if callable(spec) and not isinstance(spec, (Reply, Timeout, NetworkFailure)):
            spec = spec(req)
            if not isinstance(spec, (Reply, Timeout, NetworkFailure)):
                spec = Reply(200, spec)
        if isinstance(spec, (Timeout, NetworkFailure)):
            spec.raise_for(exchange, method, url)
        return self._respond(exchange, url, method, request_headers, body, spec)

    @staticmethod
    def _respond(exchange, url, method, request_headers, request_body, reply: Reply):
        """Mirror of ccxt/base/exchange.py ``fetch`` after ``session.request``."""
        status, reason, response_headers, text = reply.render()
        http_response = exchange.on_rest_response(
            status, reason, url, method, response_headers, text, request_headers, request_body
        )
        json_response = exchange.parse_json(http_response)
        if exchange.enableLastHttpResponse:
            exchange.last_http_response = http_response
        if exchange.enableLastJsonResponse:
            exchange.last_json_response = json_response
        if exchange.enableLastResponseHeaders:
            exchange.last_response_headers = response_headers
        if json_response and not isinstance(json_response, list) and exchange.returnResponseHeaders:
            json_response["responseHeaders"] = response_headers
        if status >= 400:  # requests' raise_for_status() -> ccxt's HTTPError branch
            details = " ".join([exchange.id, method, url])
            skip = exchange.handle_errors(
                status, reason, url, method, response_headers, http_response, json_response,
                request_headers, request_body,
            )
            if not skip:
                exchange.handle_http_status_code(status, reason, url, method, http_response)
            raise ccxt.ExchangeError(details)
        exchange.handle_errors(
            status, reason, url, method, response_headers, http_response, json_response,
            request_headers, request_body,
        )
        if json_response is not None:
            return json_response
        return http_response


# --------------------------------------------------------------------------- #
# exchange factories
# --------------------------------------------------------------------------- #


def generate_ec_p256_pem() -> str:
    """A fresh EC P-256 private key in SEC1 PEM ("BEGIN EC PRIVATE KEY"), the
    format Coinbase CDP hands out.  TEST ONLY -- generated per call."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def coinbase_test_credentials() -> dict[str, str]:
    """apiKey/secret in CDP form so ccxt signs with an ES256 JWT.  TEST ONLY."""
    return {
        "apiKey": "organizations/00000000-0000-4000-8000-000000000000/apiKeys/11111111-1111-4111-8111-111111111111",
        "secret": generate_ec_p256_pem(),
    }


def _merge(base: dict, extra: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _module(async_: bool):
    if async_:
        import ccxt.async_support as ccxt_async

        return ccxt_async
    return ccxt


def make_binance(transport: ReplayTransport | None = None, config: dict | None = None, *, async_: bool = False):
    """A real ``ccxt.binance`` (spot-only load_markets, test credentials,
    rate limiter off) with ``transport`` installed (default: binance routes)."""
    transport = transport or ReplayTransport.for_venue("binance")
    base = {
        "apiKey": "test-binance-api-key",
        "secret": "test-binance-secret",
        "enableRateLimit": False,
        "options": dict(BINANCE_SPOT_ONLY_OPTIONS),
    }
    ex = _module(async_).binance(_merge(base, config))
    transport.install(ex)
    return ex


def make_coinbase(transport: ReplayTransport | None = None, config: dict | None = None, *, async_: bool = False):
    """A real ``ccxt.coinbase`` (Advanced Trade, CDP/JWT test key, no currency
    calls in load_markets, rate limiter off) with ``transport`` installed."""
    transport = transport or ReplayTransport.for_venue("coinbase")
    base = {"enableRateLimit": False, **COINBASE_CHEAP_CONFIG, **coinbase_test_credentials()}
    ex = _module(async_).coinbase(_merge(base, config))
    transport.install(ex)
    return ex
