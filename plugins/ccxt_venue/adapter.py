"""`CcxtExchange`: one ExchangeAdapter for every ccxt venue.

A venue plugin subclasses it and sets a handful of class attributes (see
`tradeguard.plugins.binance` and `tradeguard.plugins.coinbase`); a plugin for
another ccxt venue can be a few lines (docs/exchanges.md).

What the adapter guarantees:

- **Decimals.** The ccxt client runs in string mode (``client.number = str``);
  see `convert.dec` for the one documented float boundary.
- **Secrets at build time only.** The account's secrets are read from
  ``config.secrets`` when the ccxt client is built (lazily, on first use) and
  live only inside that client; `repr` never shows them and error messages are
  scrubbed of them.
- **Network.** ``testnet`` accounts use ccxt's sandbox mode; a venue without a
  sandbox refuses a testnet account with a clear error (no silent fall-through
  to mainnet). ``api_base_url`` replaces the scheme and host of every API URL;
  signing and TLS verification stay on, plain http is allowed for loopback
  hosts only, and a testnet account can never point at the venue's production host.
- **Markets** are loaded once per process per venue/network/endpoint (`markets`).
- **Client order ids** go with every order in the parameter the venue expects.
- **Errors** become `VenueUnavailable` (outcome unknown), `VenueRejected`
  (definite refusal, with the venue's code), `CredentialsError` (names the
  account) -- see `errors`. Rate limits are retried after a backoff.

Test seam: ``CcxtExchange(config, client_factory=f)`` builds the client with
``f(ccxt_class, ccxt_config)``; or take ``adapter.client`` (built on first
access) and replace its ``fetch`` (tests/ccxt_replay.py does this).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, ClassVar, Mapping, Sequence
from urllib.parse import urlsplit

from tradeguard.errors import ConfigError, NotFound, ValidationError, VenueRejected, VenueUnavailable
from tradeguard.protocols import CAP_CASH_FLOWS, CAP_POSITIONS
from tradeguard.types import (
    Balance,
    Fill,
    Market,
    OrderRequest,
    OrderType,
    SettingSpec,
    Ticker,
    VenueOrder,
    VenuePosition,
)

from tradeguard.plugins.ccxt_venue import convert
from tradeguard.plugins.ccxt_venue.errors import OrderMissing, VenueRateLimited, ccxt_module, translate
from tradeguard.plugins.ccxt_venue.markets import DEFAULT_TTL, ensure_markets

log = logging.getLogger("tradeguard.exchange")

#: Settings every ccxt venue understands (venue plugins add their secrets).
COMMON_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("market_type", str, default="spot", help="spot, or swap/future for derivatives accounts"),
    SettingSpec("timeout_ms", int, default=10000, help="HTTP timeout per request, milliseconds"),
    SettingSpec("rate_limit_retries", int, default=3, help="retries after the venue says 'too many requests'"),
    SettingSpec("rate_limit", bool, default=True,
                help="pace requests with ccxt's client-side rate limiter (turn off only for a local test server)"),
)

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
_PROBES: dict[str, Any] = {}


def check_endpoint(url: str | None) -> str | None:
    """Validate an ``api_base_url``: https anywhere, plain http only on loopback."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"api_base_url: expected an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"api_base_url: plain http is only allowed for a loopback host (127.0.0.1, localhost); "
            f"use https for {parts.hostname}"
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _account_name(config: Any) -> str:
    for attr in ("account_name", "account"):
        value = getattr(config, attr, None)
        if value is not None:
            return value if isinstance(value, str) else str(getattr(value, "name", value))
    return str(getattr(config, "name", "?"))


class CcxtExchange:
    """An exchange adapter backed by a synchronous ccxt client (thread per account)."""

    #: ccxt's exchange id (``ccxt.<id>``).
    ccxt_id: ClassVar[str] = ""
    #: Which parameter carries our client order id on create.
    client_order_id_param: ClassVar[str] = "clientOrderId"
    #: Longest client order id the venue accepts.
    client_order_id_max_length: ClassVar[int] = 64
    #: Parameter to cancel/fetch by client order id, if the venue has one.
    client_id_lookup_param: ClassVar[str | None] = None
    #: Account secret setting -> ccxt credential attribute.
    secret_fields: ClassVar[Mapping[str, str]] = {"api_key": "apiKey", "api_secret": "secret"}
    #: Extra ccxt constructor configuration (``options`` …).
    ccxt_config: ClassVar[Mapping[str, Any]] = {}
    #: Does ccxt's sandbox mode work for this venue? If not, a testnet account needs an api_base_url.
    sandbox_supported: ClassVar[bool] = True
    sandbox_hint: ClassVar[str] = ""
    #: fetch_my_trades needs a symbol (Binance).
    my_trades_needs_symbol: ClassVar[bool] = False
    #: Extra params for fetch_balance.
    balance_params: ClassVar[Mapping[str, Any]] = {}
    #: Settings declared to the plugin manager.
    settings: ClassVar[tuple[SettingSpec, ...]] = COMMON_SETTINGS
    backoff_base: ClassVar[float] = 0.5
    max_backoff: ClassVar[float] = 10.0
    markets_ttl: ClassVar[float] = DEFAULT_TTL

    def __init__(self, config: Any, *, client_factory: Callable[[type, dict], Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.name = self.ccxt_id
        self.account = _account_name(config)
        self.testnet = bool(getattr(config, "testnet", True))
        self.api_base_url = check_endpoint(getattr(config, "api_base_url", None))
        self.options = dict(getattr(config, "settings", None) or {})
        self.market_type = str(self.options.get("market_type") or "spot").lower()
        self.rate_limit_retries = int(self.options.get("rate_limit_retries", 3))
        self.api_calls = 0
        self._client: Any = None
        self._client_factory = client_factory
        self._sleep = sleep
        self._build_lock = threading.Lock()
        # one call at a time per account: a bot placing an order and a sync share the client (its
        # last response, throttler and call counter are per client)
        self._call_lock = threading.RLock()
        self._markets: dict[str, Market] | None = None
        self._markets_stamp: Any = None
        self.capabilities = self._capabilities()
        if self.testnet and not self.sandbox_supported and not self.api_base_url:
            raise ConfigError(self._no_sandbox_message())

    # -- the ccxt client ---------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The ccxt client, built (with the account's secrets) on first use."""
        if self._client is None:
            with self._build_lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _ccxt_class(self) -> type:
        return getattr(ccxt_module(), self.ccxt_id)

    def _client_config(self) -> dict[str, Any]:
        rate_limit = self.options.get("rate_limit", True)
        if isinstance(rate_limit, str):
            rate_limit = rate_limit.strip().lower() not in ("0", "false", "no", "off")
        config = _merge({"enableRateLimit": bool(rate_limit), "timeout": int(self.options.get("timeout_ms", 10000))},
                        dict(self.ccxt_config))
        if self.market_type != "spot":
            config = _merge(config, {"options": {"defaultType": self.market_type}})
        return config

    def _build_client(self) -> Any:
        config = self._client_config()
        config.update(self._read_secrets())
        cls = self._ccxt_class()
        client = self._client_factory(cls, config) if self._client_factory else cls(config)
        config.clear()
        client.number = str  # ccxt string mode: amounts and prices as the venue's decimal strings
        self._apply_network(client)
        self._count_calls(client)
        return client

    def _read_secrets(self) -> dict[str, str]:
        """The account's credentials as ccxt attributes, read from the config's lazy accessor."""
        secrets = getattr(self.config, "secrets", None)
        if callable(secrets) and not hasattr(secrets, "get"):
            secrets = secrets()
        out: dict[str, str] = {}
        if secrets is None:
            return out
        for setting, attribute in self.secret_fields.items():
            value = secrets.get(setting)
            if value:
                out[attribute] = value
        return out

    def _apply_network(self, client: Any) -> None:
        production = self.production_hosts()
        if self.testnet:
            if self.api_base_url:
                host = urlsplit(self.api_base_url).hostname or ""
                if host.lower() in production:
                    raise ConfigError(
                        f"account {self.account} is a testnet account but its api_base_url points at "
                        f"{self.name}'s production host {host}; mark it mainnet (`tradeguard account set "
                        f"{self.account} --mainnet`) or use a sandbox URL"
                    )
            if self.sandbox_supported:
                try:
                    client.set_sandbox_mode(True)
                except (TypeError, ccxt_module().NotSupported):
                    raise ConfigError(self._no_sandbox_message()) from None
            elif not self.api_base_url:
                raise ConfigError(self._no_sandbox_message())
        if self.api_base_url:
            client.urls["api"] = _rebase(client.urls["api"], self.api_base_url, client)
        if self.testnet and not self.api_base_url:
            hosts = _hosts(client.urls["api"], client)
            if hosts & production:  # paranoia: sandbox mode must have moved every URL
                raise ConfigError(f"{self.name}: sandbox mode left URLs on the production host(s) {sorted(hosts & production)}")

    def _no_sandbox_message(self) -> str:
        return (
            f"{self.name} has no sandbox/testnet, and account {self.account} is a testnet account: "
            f"{self.sandbox_hint or ''}"
            f"mark it mainnet with `tradeguard account set {self.account} --mainnet`, "
            f"or point it at a test server with --api-base-url"
        )

    @classmethod
    def _probe(cls) -> Any:
        """A credential-less ccxt instance of the venue (its URLs and ``has`` table), one per process."""
        if cls.ccxt_id not in _PROBES:
            _PROBES[cls.ccxt_id] = getattr(ccxt_module(), cls.ccxt_id)()
        return _PROBES[cls.ccxt_id]

    @classmethod
    def production_hosts(cls) -> set[str]:
        """The venue's mainnet API hosts (lower case)."""
        probe = cls._probe()
        return _hosts(probe.urls["api"], probe)

    def _count_calls(self, client: Any) -> None:
        original = client.fetch2

        def counted_fetch2(*args: Any, **kwargs: Any) -> Any:
            self.api_calls += 1
            return original(*args, **kwargs)

        client.fetch2 = counted_fetch2

    def _capabilities(self) -> frozenset[str]:
        caps = set()
        has = self._probe().has
        if self.market_type != "spot" and has.get("fetchPositions"):
            caps.add(CAP_POSITIONS)
        if has.get("fetchDeposits") and has.get("fetchWithdrawals"):
            caps.add(CAP_CASH_FLOWS)
        return frozenset(caps)

    def __repr__(self) -> str:
        network = "testnet" if self.testnet else "mainnet"
        endpoint = f" endpoint={self.api_base_url}" if self.api_base_url else ""
        return f"<{type(self).__name__} {self.name} account={self.account} {network}{endpoint}>"

    __str__ = __repr__

    # -- calling ccxt ------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Call a ccxt method, translating errors and backing off on rate limits."""
        with self._call_lock:
            return self._call_locked(method, args, kwargs, missing_ok)

    def _call_locked(self, method: str, args: tuple, kwargs: dict[str, Any], missing_ok: bool) -> Any:
        client = self.client
        if method != "load_markets" and not client.markets:
            self.load_markets()  # ccxt would load them itself, bypassing the shared cache
        attempt = 0
        while True:
            client.last_http_response = None  # so an error's body is this call's, never an older one
            try:
                return getattr(client, method)(*args, **kwargs)
            except ccxt_module().BaseError as exc:
                body = client.last_http_response if isinstance(client.last_http_response, str) else None
                error = translate(exc, venue=self.name, account=self.account, secrets=self._secret_values(), body=body)
            if isinstance(error, VenueRateLimited):
                error.retry_after = _retry_after(client)
                delay = error.retry_after if error.retry_after is not None else self.backoff_base * (2**attempt)
                if not error.banned and attempt < self.rate_limit_retries and delay <= self.max_backoff:
                    attempt += 1
                    log.warning("%s: rate limited on %s, retry %d in %.1fs", self.name, method, attempt, delay)
                    self._sleep(delay)
                    continue
            if isinstance(error, OrderMissing) and not missing_ok:
                error = VenueRejected(f"{self.name} (account {self.account}) does not know this order: {error}", code="order_not_found")
            raise error

    def _secret_values(self) -> list[str]:
        client = self._client
        if client is None:
            return []
        return [v for v in (getattr(client, a, None) for a in set(self.secret_fields.values())) if isinstance(v, str)]

    # -- markets -----------------------------------------------------------------------------

    def _markets_key(self) -> tuple:
        return (self.ccxt_id, self.testnet, self.api_base_url, self.market_type)

    @property
    def price_cache_key(self) -> tuple:
        """Accounts with the same key see the same public prices (`tradeguard.valuation`)."""
        return self._markets_key()

    def load_markets(self, reload: bool = False) -> Mapping[str, Market]:
        """Markets by symbol; cached per process (shared across accounts), *reload* refreshes."""
        client = self.client

        def loader(c: Any) -> None:
            self._call("load_markets", True)

        ensure_markets(client, self._markets_key(), reload=reload, ttl=self.markets_ttl, loader=loader)
        stamp = getattr(client, "_tg_markets_key", None)
        if self._markets is None or stamp != self._markets_stamp:
            self._markets = {symbol: convert.market_from_ccxt(m) for symbol, m in client.markets.items()}
            self._markets_stamp = stamp
        return self._markets

    def market(self, symbol: str) -> Market:
        """One market; ValidationError naming the venue for an unknown symbol."""
        markets = self.load_markets()
        if symbol not in markets:
            raise ValidationError(f"{self.name} has no market {symbol!r}")
        return markets[symbol]

    # -- reads -------------------------------------------------------------------------------

    def fetch_ticker(self, symbol: str) -> Ticker:
        self.load_markets()
        return convert.ticker_from_ccxt(self._call("fetch_ticker", symbol))

    def fetch_balance(self) -> Sequence[Balance]:
        return convert.balances_from_ccxt(self._call("fetch_balance", dict(self.balance_params)))

    def fetch_positions(self) -> Sequence[VenuePosition]:
        """Open derivatives positions; a spot account has none."""
        if CAP_POSITIONS not in self.capabilities:
            return []
        self.load_markets()
        positions = (convert.position_from_ccxt(p) for p in self._call("fetch_positions"))
        return [p for p in positions if p is not None]

    def fetch_order(self, symbol: str, exchange_order_id: str) -> VenueOrder:
        self.load_markets()
        try:
            raw = self._call("fetch_order", exchange_order_id, symbol, missing_ok=True)
        except OrderMissing:
            raise NotFound(f"{self.name} has no order {exchange_order_id} on {symbol}") from None
        return convert.order_from_ccxt(raw)

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The order the venue knows under *client_order_id*, or None if it never arrived."""
        self.load_markets()
        if self.client_id_lookup_param:
            try:
                raw = self._call("fetch_order", None, symbol, {self.client_id_lookup_param: client_order_id}, missing_ok=True)
            except OrderMissing:
                return None
            return convert.order_from_ccxt(raw)
        return self._search_by_client_id(symbol, client_order_id)

    def _search_by_client_id(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """Venues without a lookup by client id: scan open, then recent orders."""
        for method, capability in (("fetch_open_orders", "fetchOpenOrders"), ("fetch_orders", "fetchOrders")):
            if not self.client.has.get(capability):
                continue
            for raw in self._call(method, symbol):
                if raw.get("clientOrderId") == client_order_id:
                    if raw.get("id") and raw.get("amount") is None:
                        raw = self._call("fetch_order", raw["id"], symbol)
                    return convert.order_from_ccxt(raw)
        return None

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[VenueOrder]:
        self.load_markets()
        return [convert.order_from_ccxt(o) for o in self._call("fetch_open_orders", symbol)]

    def fetch_my_trades(self, symbol: str | None = None, since: Any = None) -> Sequence[Fill]:
        """Fills, oldest first; *since* is a datetime (or ms)."""
        if symbol is None and self.my_trades_needs_symbol:
            raise ValidationError(f"{self.name} lists fills per symbol: give a symbol")
        self.load_markets()
        since_ms = int(since.timestamp() * 1000) if isinstance(since, datetime) else since
        trades = self._call("fetch_my_trades", symbol, since_ms)
        return [convert.fill_from_ccxt(t, client_order_id=self._client_id_of_trade(t)) for t in trades]

    def _client_id_of_trade(self, trade: Mapping[str, Any]) -> str | None:
        info = trade.get("info") or {}
        return info.get("clientOrderId") or info.get("client_order_id")

    def fetch_cash_flows(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Deposits and withdrawals since *since*, as dicts (kind, asset, amount, external_id, timestamp, fee)."""
        since_ms = int(since.timestamp() * 1000) if since else None
        out = []
        for method, kind in (("fetch_deposits", "DEPOSIT"), ("fetch_withdrawals", "WITHDRAWAL")):
            for tx in self._call(method, None, since_ms):
                status = str(tx.get("status") or "ok").lower()
                amount = convert.dec(tx.get("amount"))
                if status not in ("ok", "completed", "complete") or not amount:
                    continue
                fee, _, _ = convert.fee_of(tx)
                out.append({
                    "kind": kind,
                    "asset": tx.get("currency"),
                    "amount": abs(amount),
                    "fee": fee,
                    "external_id": f"{kind.lower()}:{tx.get('id') or tx.get('txid')}",
                    "timestamp": convert.ms_to_datetime(tx.get("timestamp")),
                })
        return out

    # -- orders ------------------------------------------------------------------------------

    def create_order(self, request: OrderRequest, client_order_id: str) -> VenueOrder:
        """Send *request* tagged with *client_order_id*.

        VenueUnavailable: the outcome is unknown (look it up by client id);
        VenueRejected: definitely not placed; CredentialsError: keys refused.
        """
        if not client_order_id or len(client_order_id) > self.client_order_id_max_length:
            raise ValidationError(
                f"client order id {client_order_id!r}: {self.name} takes 1 to {self.client_order_id_max_length} characters"
            )
        market = self.market(request.symbol)
        self._check_steps(request, market)
        price = self._price_for(request)
        params = {self.client_order_id_param: client_order_id, **self._order_params(request)}
        raw = self._call(
            "create_order", request.symbol, request.type.value, request.side.value,
            str(request.quantity), None if price is None else str(price), params,
        )
        fallback = {
            "symbol": request.symbol, "side": request.side.value, "type": request.type.value,
            "quantity": request.quantity, "price": request.price, "client_order_id": client_order_id,
        }
        order = convert.order_from_ccxt(raw, fallback=fallback)
        if raw.get("status") is None and order.exchange_order_id:
            order = self._refresh_after_write(request.symbol, order, fallback)
        return order

    def _refresh_after_write(self, symbol: str, order: VenueOrder, fallback: Mapping[str, Any]) -> VenueOrder:
        """A terse answer (Coinbase): fetch the order; if that fails, the terse view stands."""
        try:
            raw = self._call("fetch_order", order.exchange_order_id, symbol)
        except (VenueUnavailable, VenueRejected) as exc:
            log.warning("%s: order %s accepted, state not fetched yet: %s", self.name, order.exchange_order_id, exc)
            return order
        return convert.order_from_ccxt(raw, fallback=fallback)

    def _check_steps(self, request: OrderRequest, market: Market) -> None:
        """ccxt would silently truncate an amount off the venue's step: refuse instead."""
        if market.amount_step and request.quantity % market.amount_step:
            raise VenueRejected(
                f"quantity {request.quantity} is not a multiple of {request.symbol}'s step {market.amount_step} on {self.name}",
                code="amount_step",
            )
        if request.price is not None and request.type is OrderType.LIMIT and market.price_step and request.price % market.price_step:
            raise VenueRejected(
                f"price {request.price} is not a multiple of {request.symbol}'s tick {market.price_step} on {self.name}",
                code="price_step",
            )

    def _price_for(self, request: OrderRequest) -> Decimal | None:
        return request.price if request.type is OrderType.LIMIT else None

    def _order_params(self, request: OrderRequest) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if request.reduce_only and self.market_type != "spot":
            params["reduceOnly"] = True
        return params

    def cancel_order(self, symbol: str, exchange_order_id: str | None, client_order_id: str | None) -> VenueOrder:
        """Cancel an order; an order the venue no longer has open comes back in its final state."""
        self.load_markets()
        if not exchange_order_id and not client_order_id:
            raise ValidationError("cancel needs the exchange order id or the client order id")
        if not exchange_order_id and not self.client_id_lookup_param:
            found = self.fetch_order_by_client_id(symbol, client_order_id)
            if found is None:
                raise VenueRejected(f"{self.name} does not know order {client_order_id}", code="order_not_found")
            exchange_order_id = found.exchange_order_id
        params = {} if exchange_order_id else {self.client_id_lookup_param: client_order_id}
        try:
            raw = self._call("cancel_order", exchange_order_id, symbol, params, missing_ok=True)
        except (OrderMissing, VenueRejected) as exc:
            current = self._current(symbol, exchange_order_id, client_order_id)
            if current is None or not current.status.is_final:
                if isinstance(exc, VenueRejected):
                    raise
                raise VenueRejected(f"{self.name} does not know order {exchange_order_id or client_order_id}: {exc}",
                                    code="order_not_found") from None
            return current
        if raw.get("status") is None or raw.get("amount") is None or raw.get("side") is None:
            # a terse answer (Coinbase: just the id): read the order's state
            current = self._current(symbol, raw.get("id") or exchange_order_id, client_order_id)
            if current is None:
                raise VenueUnavailable(f"{self.name} accepted the cancel of {exchange_order_id or client_order_id} "
                                       f"but the order's state could not be read")
            return current
        return convert.order_from_ccxt(raw)

    def _current(self, symbol: str, exchange_order_id: str | None, client_order_id: str | None) -> VenueOrder | None:
        if exchange_order_id:
            try:
                return self.fetch_order(symbol, exchange_order_id)
            except NotFound:
                return None
        return self.fetch_order_by_client_id(symbol, client_order_id) if client_order_id else None

    def close(self) -> None:
        """Release HTTP connections (the secrets go with the client)."""
        client, self._client = self._client, None
        session = getattr(client, "session", None)
        if session is not None:
            try:
                session.close()
            except Exception:  # pragma: no cover - closing is best effort
                pass


# -- helpers ---------------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def _walk_urls(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: _walk_urls(v, fn) for k, v in value.items()}
    return value


def _hosts(urls: Any, client: Any) -> set[str]:
    hosts: set[str] = set()

    def collect(url: str) -> str:
        host = urlsplit(client.implode_hostname(url)).hostname
        if host:
            hosts.add(host.lower())
        return url

    _walk_urls(urls, collect)
    return hosts


def _rebase(urls: Any, base_url: str, client: Any) -> Any:
    """Every API URL with its scheme and host replaced by *base_url* (path prefix kept)."""
    base = base_url.rstrip("/")

    def rebase(url: str) -> str:
        parts = urlsplit(client.implode_hostname(url))
        if not parts.scheme:
            return url
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        return base + rest

    return _walk_urls(urls, rebase)


def _retry_after(client: Any) -> float | None:
    headers = getattr(client, "last_response_headers", None) or {}
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        return None
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


__all__ = ["COMMON_SETTINGS", "CcxtExchange", "check_endpoint"]
