"""The paper exchange: a simulated venue implementing the full exchange protocol.

- balances per asset (free/used), funded from the ``starting_balance``
  setting or by the core from the account's initial capital;
- market orders fill at the current price plus ``slippage`` (taker fee);
- limit orders rest until the price crosses them and fill at their price
  (maker fee; taker if they cross on arrival);
- large orders fill in parts: at most ``liquidity`` (quote value) per
  matching pass; the rest fills on later passes (every call to the venue
  runs a pass);
- buys need the quote cash (price × quantity + fee), sells the base asset:
  otherwise `VenueRejected` with code ``insufficient_funds``;
- stop orders (a market request with ``stop_loss`` set, as tradeguard sends
  protective stop-loss orders) trigger when the price crosses the stop;
- prices come from a pluggable feed (`feeds`), advanced one step on each
  ``fetch_ticker``; `set_price` fixes a price (tests, demos);
- the book lives in the ``plugin_state`` table (see `state`), so a restarted
  bot sees its open paper orders: one small row with the balances and the
  live orders (its size, and so the venue's cost per order, does not grow
  with the number of orders placed), and archive rows per closed order
  (with its fills), the newest `KEEP_ARCHIVED_ORDERS` kept: while archived,
  a closed order is found by exchange or client order id, and its client
  order id is refused as a duplicate; `fetch_my_trades` returns the newest
  `KEEP_TRADES` trades.

For tests: `fail_next` makes the next calls fail like a network error
(before or after the venue accepted the order) or a rejection; ``sent``
lists the client order ids that reached `create_order`.
"""

from __future__ import annotations

import dataclasses
import decimal
import operator
import secrets
from decimal import Decimal
from typing import Any, Mapping, Sequence

from tradeguard.clock import isoformat, parse_iso, utcnow
from tradeguard.errors import VenueRejected, VenueUnavailable
from tradeguard.money import plain, positive
from tradeguard.plugins.paper.feeds import make_feed
from tradeguard.plugins.paper.state import KEEP_ARCHIVED_ORDERS, LIVE, BookStore
from tradeguard.types import (
    Balance,
    Fill,
    Market,
    MarketKind,
    OrderRequest,
    OrderStatus,
    OrderType,
    SettingSpec,
    Side,
    Ticker,
    VenueOrder,
    VenuePosition,
)

CAP_STOP_ORDERS = "stop_orders"

SETTINGS = (
    SettingSpec("starting_balance", str, default="10000", help="quote currency a new paper book starts with"),
    SettingSpec("price_feed", str, default="random_walk", help="random_walk, fixed:PRICE or csv:PATH"),
    SettingSpec("seed", int, default=42, help="seed of the random-walk feed"),
    SettingSpec("volatility_bp", int, default=20, help="largest random-walk step, basis points"),
    SettingSpec("slippage", str, default="0.0005", help="market orders fill this fraction worse than the price"),
    SettingSpec("maker_fee", str, default="0.001", help="fee rate of resting limit orders"),
    SettingSpec("taker_fee", str, default="0.001", help="fee rate of market orders and crossing limits"),
    SettingSpec("liquidity", str, default="100000", help="quote value that can fill per matching pass"),
    SettingSpec("symbols", str, default="BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT", help="markets offered"),
)

CTX = decimal.Context(prec=60)
_AVERAGE = CTX.copy()  # `_venue_order`'s division, in CTX's terms without entering a local context
_ZERO = Decimal(0)
_BUFFER = Decimal("1.02")
_DEFAULT_STEP = Decimal("0.00000001")
_seq = operator.itemgetter("seq")
#: Trades `fetch_my_trades` returns (the newest). Closed orders kept: `KEEP_ARCHIVED_ORDERS`, from `state`.
KEEP_TRADES = 300
__all__ = ["CAP_STOP_ORDERS", "KEEP_ARCHIVED_ORDERS", "KEEP_TRADES", "SETTINGS", "PaperExchange"]
STEPS = {"BTC": ("0.00001", "0.01"), "ETH": ("0.0001", "0.01"), "SOL": ("0.001", "0.001"), "BNB": ("0.001", "0.01")}


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


#: plain() of the few Decimals converted on every fill (fee rates, amount steps), by value.
_TEXTS: dict[Decimal, str] = {}


def _text(value: Decimal) -> str:
    """plain(*value*), remembered: only for values drawn from a small set (fee rates, amount steps)."""
    text = _TEXTS.get(value)
    if text is None:
        if len(_TEXTS) > 256:
            _TEXTS.clear()
        text = _TEXTS[value] = plain(value)
    return text


# -- VenueOrder / Fill without their validation: the venue builds them from its own book, whose values
# are valid by construction (positive prices and quantities, fees >= 0, filled <= quantity, enum members).
# Filling the instance's __dict__ gives the object the constructor gives (tests compare both); only
# done while the classes have exactly the fields below and no slots, else the constructors are used.
_FILL_FIELDS = ("trade_id", "symbol", "side", "price", "quantity", "timestamp", "exchange_order_id",
                "client_order_id", "fee", "fee_currency", "fee_rate", "taker")
_ORDER_FIELDS = ("client_order_id", "exchange_order_id", "symbol", "side", "type", "quantity", "status", "price",
                 "filled", "average_price", "fee", "fee_currency", "exchange_status", "fills", "timestamp")


def _fillable(cls: type, names: tuple[str, ...]) -> bool:
    """True if an instance of dataclass *cls* is fully made by setting *names* in its __dict__."""
    if not dataclasses.is_dataclass(cls) or "__slots__" in cls.__dict__:
        return False
    fields = dataclasses.fields(cls)
    return tuple(f.name for f in fields) == names and all(f.init for f in fields) and not any(
        isinstance(value, dataclasses.InitVar) for value in getattr(cls, "__annotations__", {}).values())


#: Build VenueOrder / Fill by filling their __dict__ (False: through their constructors).
DIRECT_BUILD = _fillable(Fill, _FILL_FIELDS) and _fillable(VenueOrder, _ORDER_FIELDS)
_new = object.__new__
_SIDES = {member._value_: member for member in Side}
_TYPES = {member._value_: member for member in OrderType}
_STATUSES = {member._value_: member for member in OrderStatus}


#: symbol -> symbol.split("/") (base, quote), for the symbols seen (bounded by the markets offered)
_PAIRS: dict[str, tuple[str, ...]] = {}


def _pair(symbol: str) -> tuple[str, ...]:
    if len(_PAIRS) > 4096:
        _PAIRS.clear()
    parts = _PAIRS[symbol] = tuple(symbol.split("/"))
    return parts


_STATUS_WORDS = {status: status.lower() for status in _STATUSES}


def _plain(value: Decimal) -> str:
    """`plain` (the book's canonical text of a Decimal: no exponent, no trailing zeros) with fewer calls:
    the hot path converts a dozen amounts per order."""
    text = format(value, "f")
    if text[-1] == "0" and "." in text:
        text = text.rstrip("0")
        if text[-1] == ".":
            text = text[:-1]
    return "0" if text == "-0" else text


def _duplicate(client_order_id: str) -> VenueRejected:
    return VenueRejected(f"duplicate client order id {client_order_id}", code="duplicate_client_order_id")


def _trade_number(trade: Mapping[str, Any]) -> int:
    """The book's sequence number of a trade (ids are ``P<nonce>-<number>``): trade order."""
    return int(trade["trade_id"].rsplit("-", 1)[1])


class PaperExchange:
    """A simulated venue for one account (see the module docs)."""

    name = "paper"
    testnet = True
    simulated = True
    capabilities = frozenset({CAP_STOP_ORDERS})

    def __init__(self, config: Any, *, feed: Any = None, markets_from: Any = None):
        settings: Mapping[str, Any] = dict(getattr(config, "settings", None) or {})
        defaults = {s.name: s.default for s in SETTINGS}
        get = lambda key: settings.get(key, defaults.get(key))  # noqa: E731
        self.account = getattr(config, "account", "paper")
        self.starting_balance = positive(str(get("starting_balance")), "starting_balance")
        self.slippage = _d(get("slippage"))
        self.maker_fee = _d(get("maker_fee"))
        self.taker_fee = _d(get("taker_fee"))
        self.liquidity = positive(str(get("liquidity")), "liquidity")
        self.symbols = [s.strip() for s in str(get("symbols")).split(",") if s.strip()]
        self.feed = feed or make_feed(str(get("price_feed")), seed=int(get("seed")), volatility_bp=int(get("volatility_bp")))
        self._markets_from = markets_from
        self._markets: dict[str, Market] | None = None
        self.store = BookStore(settings.get("state_key") or f"account:{self.account}", self._new_book)
        self._failures: list[str] = []
        self.sent: list[str] = []

    def __repr__(self) -> str:
        return f"<PaperExchange {self.account}>"

    # -- book ------------------------------------------------------------------------------

    def _new_book(self, balances: Mapping[str, Decimal] | None = None) -> dict[str, Any]:
        quote = "USDT"
        funded = balances or {quote: self.starting_balance}
        return {"nonce": secrets.token_hex(4), "next_order": 1, "next_trade": 1,
                "balances": {asset: {"free": plain(amount), "used": "0"} for asset, amount in funded.items()},
                "orders": {}, "archived": 0, "feed": {}, "prices": {}}

    def initialize(self, balances: Mapping[str, Decimal]) -> bool:
        """Fund a new book with *balances* (nothing happens if the book exists). Returns True if created."""
        if self.store.peek() is not None:
            return False
        initial = self.store.initial
        self.store.initial = lambda: self._new_book(dict(balances))
        try:
            with self.store.book():
                pass
        finally:
            self.store.initial = initial
        return True

    _STAGES = {"unavailable": "create", "rejected": "create", "after_send": "after_send",
               "lookup_unavailable": "lookup", "cancel_unavailable": "cancel"}

    def _fail(self, stage: str) -> None:
        if not self._failures:
            return
        kind = self._failures[0]
        if kind == "down":
            raise VenueUnavailable("simulated outage: the venue is down")
        if self._STAGES.get(kind) == stage:
            self._failures.pop(0)
            if kind == "rejected":
                raise VenueRejected("simulated rejection", code="simulated")
            raise VenueUnavailable("simulated network timeout")

    def fail_next(self, *kinds: str) -> None:
        """Test helper: make the next calls fail, in order. Kinds: ``unavailable`` (create_order
        times out before the venue acts), ``after_send`` (create_order accepted the order, then the
        answer was lost), ``rejected`` (create_order refused), ``lookup_unavailable``
        (fetch_order_by_client_id times out), ``cancel_unavailable``, ``down`` (every call fails
        until `recover`)."""
        self._failures.extend(kinds)

    def recover(self) -> None:
        """Test helper: end simulated failures."""
        self._failures.clear()

    # -- prices and matching ---------------------------------------------------------------

    def _price(self, book: dict[str, Any], symbol: str) -> Decimal:
        if symbol in book["prices"]:
            return _d(book["prices"][symbol])
        return self.feed.price(symbol, book["feed"])

    def set_price(self, symbol: str, price: Any) -> None:
        """Fix *symbol*'s price (persisted) and match resting orders against it."""
        value = positive(price, "price")
        with self.store.book() as book:
            book["prices"][symbol] = plain(value)
            self._match(book)

    def advance(self, steps: int = 1, symbol: str | None = None) -> None:
        """Move the feed *steps* steps (every symbol, or one) and match."""
        with self.store.book() as book:
            for _ in range(steps):
                for sym in ([symbol] if symbol else self.symbols):
                    if sym not in book["prices"]:
                        self.feed.advance(sym, book["feed"])
                self._match(book)

    def tick(self) -> None:
        """Run one matching pass."""
        with self.store.book() as book:
            self._match(book)

    def _balance(self, book: dict[str, Any], asset: str) -> dict[str, str]:
        return book["balances"].setdefault(asset, {"free": "0", "used": "0"})

    def _adjust(self, book: dict[str, Any], asset: str, free: Decimal = Decimal(0), used: Decimal = Decimal(0)) -> None:
        entry = self._balance(book, asset)
        entry["free"] = plain(_d(entry["free"]) + free)
        entry["used"] = plain(_d(entry["used"]) + used)

    def _match(self, book: dict[str, Any]) -> None:
        with decimal.localcontext(CTX):
            self._match_in_context(book)

    def _match_in_context(self, book: dict[str, Any]) -> None:
        """`_match`, in CTX already (`create_order`)."""
        orders = book["orders"]
        if not orders:
            return
        prices, feed = book["prices"], book["feed"]
        # nothing adds or removes orders during a pass: the dict itself is iterated when it holds one
        for order in sorted(orders.values(), key=_seq) if len(orders) > 1 else orders.values():
            if order["status"] not in LIVE:
                continue
            symbol = order["symbol"]
            price = Decimal(prices[symbol]) if symbol in prices else self.feed.price(symbol, feed)
            buy = order["side"] == "buy"
            stop = order["stop"] if "stop" in order else None
            if stop and not order.get("triggered"):
                stop = Decimal(stop)
                if (buy and price >= stop) or (not buy and price <= stop):
                    order["triggered"] = True
                else:
                    continue
            if order["type"] == "market":
                fill_price = price * (1 + self.slippage) if buy else price * (1 - self.slippage)
                self._fill(book, order, fill_price, taker=True)
            else:
                limit = Decimal(order["price"])
                if (buy and price <= limit) or (not buy and price >= limit):
                    self._fill(book, order, limit, taker=order.get("crossing", False))
            order["crossing"] = False

    def _fill(self, book: dict[str, Any], order: dict[str, Any], price: Decimal, *, taker: bool) -> None:
        # Each stored amount is read once and each new one written once (plain text): the same
        # operations, in the same order and context, as adjusting the stored strings step by step.
        symbol, side = order["symbol"], order["side"]
        base, quote = _PAIRS[symbol] if symbol in _PAIRS else _pair(symbol)
        balances = book["balances"]
        quantity = Decimal(order["quantity"])
        filled = Decimal(order["filled"])
        remaining = quantity - filled
        step = Decimal(order["step"]) if "step" in order else _DEFAULT_STEP
        most = (self.liquidity / price // step) * step
        qty = (most if most < remaining else remaining) if most > 0 else remaining  # min(remaining, most)
        if order["reduce_only"] and side == "sell":
            qty = min(qty, Decimal((balances[base] if base in balances else self._balance(book, base))["free"]))
            if qty <= 0:
                self._close(book, order, "CANCELED", "reduce-only: nothing left to reduce")
                return
        rate = self.taker_fee if taker else self.maker_fee
        notional = qty * price
        fee = notional * rate
        if side == "buy":
            lock = Decimal(order["lock"])
            lock_per_unit = lock / remaining if remaining else _ZERO
            release = lock_per_unit * qty
            cash = (balances[quote] if quote in balances else self._balance(book, quote))
            free = Decimal(cash["free"])
            if free + release < notional + fee:
                self._close(book, order, "CANCELED", "insufficient balance for the rest of the order")
                return
            cash["free"] = _plain(free + (release - notional - fee))
            cash["used"] = _plain(Decimal(cash["used"]) + -release)
            lock = lock - release
            order["lock"] = _plain(lock) if lock else "0"
            asset = (balances[base] if base in balances else self._balance(book, base))
            asset["free"] = _plain(Decimal(asset["free"]) + qty)
        else:
            asset = (balances[base] if base in balances else self._balance(book, base))
            if order["reduce_only"]:
                asset["free"] = _plain(Decimal(asset["free"]) + -qty)
            else:
                asset["used"] = _plain(Decimal(asset["used"]) + -qty)
            cash = (balances[quote] if quote in balances else self._balance(book, quote))
            cash["free"] = _plain(Decimal(cash["free"]) + (notional - fee))
        number = book["next_trade"]
        book["next_trade"] = number + 1
        first = not filled  # the order's first fill: its totals are this fill's figures
        qty_text = order["quantity"] if first and qty == quantity else _plain(qty)
        fee_text = _plain(fee)
        order["fills"].append({
            "trade_id": f"P{book['nonce']}-{number}", "order_id": order["id"],
            "client_order_id": order["client_order_id"], "symbol": symbol, "side": side, "price": _plain(price),
            "quantity": qty_text, "fee": fee_text, "fee_currency": quote,
            "fee_rate": _TEXTS[rate] if rate in _TEXTS else _text(rate), "taker": taker, "timestamp": isoformat(utcnow())})
        filled = filled + qty
        order["filled"] = qty_text if first else _plain(filled)
        order["cost"] = _plain(notional) if first and order["cost"] == "0" else _plain(Decimal(order["cost"]) + notional)
        order["fee"] = fee_text if first and order["fee"] == "0" else _plain(Decimal(order["fee"]) + fee)
        order["status"] = status = "FILLED" if filled >= quantity else "PARTIALLY_FILLED"
        if status == "FILLED" and side == "buy" and lock > 0:
            cash["free"] = _plain(Decimal(cash["free"]) + lock)
            cash["used"] = _plain(Decimal(cash["used"]) + -lock)
            order["lock"] = "0"

    def _close(self, book: dict[str, Any], order: dict[str, Any], status: str, note: str = "") -> None:
        base, quote = order["symbol"].split("/")
        if order["side"] == "buy":
            self._adjust(book, quote, free=_d(order["lock"]), used=-_d(order["lock"]))
            order["lock"] = "0"
        elif not order["reduce_only"]:
            rest = _d(order["quantity"]) - _d(order["filled"])
            self._adjust(book, base, free=rest, used=-rest)
        order["status"] = status
        order["note"] = note

    # -- protocol --------------------------------------------------------------------------

    def load_markets(self, reload: bool = False) -> Mapping[str, Market]:
        if self._markets is None or reload:
            if self._markets_from is not None:
                self._markets = dict(self._markets_from.load_markets(reload))
            else:
                markets = {}
                for symbol in self.symbols:
                    base, quote = symbol.split("/")
                    amount, tick = STEPS.get(base, ("0.0001", "0.01"))
                    markets[symbol] = Market(symbol, base, quote, MarketKind.SPOT, amount_step=_d(amount),
                                             price_step=_d(tick), min_amount=_d(amount), min_notional=Decimal("1"))
                self._markets = markets
        return self._markets

    def fetch_ticker(self, symbol: str) -> Ticker:
        if self._failures:
            self._fail("before")
        market = (self._markets or self.load_markets()).get(symbol)
        if market is None:
            raise VenueRejected(f"unknown symbol {symbol}", code="invalid_symbol")
        book = self.store.read()
        if book is not None and symbol in book["prices"] and (not book["orders"] or not any(
                o["status"] in LIVE for o in book["orders"].values())):
            last = _d(book["prices"][symbol])  # a fixed price and nothing to match: the pass would change nothing
        else:
            with self.store.book() as book:
                if symbol not in book["prices"]:
                    self.feed.advance(symbol, book["feed"])
                self._match(book)
                last = self._price(book, symbol)
        step = market.price_step or Decimal("0.01")
        return Ticker(symbol, bid=last - step, ask=last + step, last=last, timestamp=utcnow())

    def fetch_balance(self) -> Sequence[Balance]:
        self._fail("before")
        with self.store.book() as book:
            self._match(book)
            balances = dict(book["balances"])
        return [Balance(asset, _d(v["free"]), _d(v["used"]), _d(v["free"]) + _d(v["used"]))
                for asset, v in sorted(balances.items())]

    def fetch_positions(self) -> Sequence[VenuePosition]:
        return []

    def _known(self, symbol: str) -> None:
        if symbol not in self.load_markets():
            raise VenueRejected(f"unknown symbol {symbol}", code="invalid_symbol")

    def create_order(self, request: OrderRequest, client_order_id: str) -> VenueOrder:
        if self._failures:
            self._fail("create")
        symbol = request.symbol
        market = (self._markets or self.load_markets()).get(symbol)
        if market is None:
            raise VenueRejected(f"unknown symbol {symbol}", code="invalid_symbol")
        if request.leverage != 1 or request.market is not MarketKind.SPOT:
            raise VenueRejected("the paper venue is spot only (leverage 1)", code="unsupported")
        block = self.store.book(client_order_id)
        with decimal.localcontext(CTX), block as book:
            orders = book["orders"]
            for live in orders.values():
                if live["client_order_id"] == client_order_id:
                    raise _duplicate(client_order_id)
            if block.closed_order_id(client_order_id) is not None:
                raise _duplicate(client_order_id)
            prices = book["prices"]
            price = Decimal(prices[symbol]) if symbol in prices else self.feed.price(symbol, book["feed"])
            base, quote = _PAIRS[symbol] if symbol in _PAIRS else _pair(symbol)
            balances = book["balances"]
            buy = request.side is Side.BUY
            limit = request.type is OrderType.LIMIT
            quantity = request.quantity
            stop = request.stop_loss if request.type is OrderType.MARKET and request.stop_loss is not None else None
            step = market.amount_step or _DEFAULT_STEP
            lock = _ZERO
            if buy:
                highest = stop if stop is not None and stop > price else price  # max(price, stop or price)
                ref = request.price if limit else highest * (1 + self.slippage) * _BUFFER
                taker_fee, maker_fee = self.taker_fee, self.maker_fee
                lock = quantity * ref * (1 + (maker_fee if maker_fee > taker_fee else taker_fee))
                cash = (balances[quote] if quote in balances else self._balance(book, quote))
                free = Decimal(cash["free"])
                if free < lock:
                    raise VenueRejected(f"insufficient balance: {plain(free)} {quote} free, "
                                        f"{plain(lock.quantize(Decimal('0.01')))} needed", code="insufficient_funds")
                cash["free"] = _plain(free + -lock)
                cash["used"] = _plain(Decimal(cash["used"]) + lock)
            elif not request.reduce_only:
                asset = (balances[base] if base in balances else self._balance(book, base))
                free = Decimal(asset["free"])
                if free < quantity:
                    raise VenueRejected(f"insufficient balance: {plain(free)} {base} free, "
                                        f"{plain(quantity)} needed", code="insufficient_funds")
                asset["free"] = _plain(free + -quantity)
                asset["used"] = _plain(Decimal(asset["used"]) + quantity)
            seq = book["next_order"]
            book["next_order"] = seq + 1
            order_id = f"{book['nonce']}-{seq}"
            crossing = limit and ((buy and price <= request.price) or (not buy and price >= request.price))
            order = {"id": order_id, "seq": seq, "client_order_id": client_order_id, "symbol": symbol,
                     "side": request.side._value_, "type": request.type._value_,
                     "price": _plain(request.price) if request.price is not None else None,
                     "stop": _plain(stop) if stop is not None else None, "quantity": _plain(quantity),
                     "filled": "0", "cost": "0", "fee": "0", "lock": _plain(lock) if buy else "0", "status": "OPEN",
                     "reduce_only": request.reduce_only, "crossing": crossing, "fills": [],
                     "step": _TEXTS[step] if step in _TEXTS else _text(step), "created": isoformat(utcnow())}
            orders[order_id] = order
            self.sent.append(client_order_id)
            self._match_in_context(book)
            result = self._venue_order(order)
        if self._failures:
            self._fail("after_send")
        return result

    def _venue_order(self, order: dict[str, Any]) -> VenueOrder:
        if not DIRECT_BUILD:
            return self._venue_order_constructed(order)
        # anything the constructors would refuse (or convert differently) goes through them
        try:
            order_id, client_order_id = order["id"], order["client_order_id"]
            fills: tuple[Fill, ...] | list[Fill] = ()
            trades = order["fills"]
            if trades:
                fills = []
                for t in trades:
                    price, quantity, fee = Decimal(t["price"]), Decimal(t["quantity"]), Decimal(t["fee"])
                    if not (price > 0 and quantity > 0 and fee >= 0):
                        return self._venue_order_constructed(order)
                    fill = _new(Fill)
                    fill.__dict__.update(
                        trade_id=t["trade_id"], symbol=t["symbol"], side=_SIDES[t["side"]], price=price,
                        quantity=quantity, timestamp=parse_iso(t["timestamp"]), exchange_order_id=order_id,
                        client_order_id=client_order_id, fee=fee, fee_currency=t["fee_currency"],
                        fee_rate=Decimal(t["fee_rate"]), taker=t["taker"])
                    fills.append(fill)
                fills = tuple(fills)
            quantity, filled = Decimal(order["quantity"]), Decimal(order["filled"])
            if not (0 <= filled <= quantity):
                return self._venue_order_constructed(order)
            symbol, status = order["symbol"], order["status"]
            result = _new(VenueOrder)
            result.__dict__.update(
                client_order_id=client_order_id, exchange_order_id=order_id, symbol=symbol,
                side=_SIDES[order["side"]], type=_TYPES[order["type"]], quantity=quantity,
                status=_STATUSES[status], price=Decimal(order["price"]) if order["price"] else None, filled=filled,
                average_price=_AVERAGE.divide(Decimal(order["cost"]), filled) if filled else None,
                fee=Decimal(order["fee"]), fee_currency=(_PAIRS[symbol] if symbol in _PAIRS else _pair(symbol))[1],
                exchange_status=(order["note"] if "note" in order else None) or _STATUS_WORDS[status], fills=fills,
                timestamp=parse_iso(order["created"]))
        except KeyError:
            return self._venue_order_constructed(order)
        return result

    def _venue_order_constructed(self, order: dict[str, Any]) -> VenueOrder:
        """`_venue_order` through the VenueOrder and Fill constructors (validated)."""
        order_id, client_order_id = order["id"], order["client_order_id"]
        fills = tuple(
            Fill(trade_id=t["trade_id"], symbol=t["symbol"], side=t["side"], price=Decimal(t["price"]),
                 quantity=Decimal(t["quantity"]), timestamp=parse_iso(t["timestamp"]), exchange_order_id=order_id,
                 client_order_id=client_order_id, fee=Decimal(t["fee"]), fee_currency=t["fee_currency"],
                 fee_rate=Decimal(t["fee_rate"]), taker=t["taker"])
            for t in order["fills"])
        filled = Decimal(order["filled"])
        symbol, status = order["symbol"], order["status"]
        return VenueOrder(
            client_order_id=client_order_id, exchange_order_id=order_id, symbol=symbol,
            side=order["side"], type=order["type"], quantity=Decimal(order["quantity"]),
            status=status, price=Decimal(order["price"]) if order["price"] else None, filled=filled,
            average_price=_AVERAGE.divide(Decimal(order["cost"]), filled) if filled else None,
            fee=Decimal(order["fee"]), fee_currency=symbol.split("/")[1],
            exchange_status=order.get("note") or status.lower(), fills=fills,
            timestamp=parse_iso(order["created"]))

    def cancel_order(self, symbol: str, exchange_order_id: str | None, client_order_id: str | None) -> VenueOrder:
        self._fail("cancel")
        with self.store.book() as book:
            self._match(book)
            order = self._find(book, exchange_order_id, client_order_id)
            if order is None:
                raise VenueRejected("unknown order", code="order_not_found")
            if order["status"] not in LIVE:
                raise VenueRejected(f"order is {order['status'].lower()}", code="order_closed")
            self._close(book, order, "CANCELED", "canceled")
            return self._venue_order(order)

    def _find(self, book: dict[str, Any], exchange_order_id: str | None,
              client_order_id: str | None) -> dict[str, Any] | None:
        """The order: in the book (live, or closed during this block), else archived (read only)."""
        orders = book["orders"]
        if exchange_order_id:
            if exchange_order_id in orders:
                return orders[exchange_order_id]
            archived = self.store.archived(exchange_order_id)
            if archived is not None:
                return archived
        if client_order_id:
            for order in orders.values():
                if order["client_order_id"] == client_order_id:
                    return order
            closed = self.store.closed_order_id(client_order_id)
            if closed is not None:
                return self.store.archived(closed)
        return None

    def fetch_order(self, symbol: str, exchange_order_id: str) -> VenueOrder:
        self._fail("before")
        with self.store.book() as book:
            self._match(book)
            order = self._find(book, exchange_order_id, None)
            if order is None:
                raise VenueRejected("unknown order", code="order_not_found")
            return self._venue_order(order)

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        self._fail("lookup")
        with self.store.book() as book:
            self._match(book)
            order = self._find(book, None, client_order_id)
            return None if order is None else self._venue_order(order)

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[VenueOrder]:
        self._fail("before")
        with self.store.book() as book:
            self._match(book)
            return [self._venue_order(o) for o in sorted(book["orders"].values(), key=lambda o: o["seq"])
                    if o["status"] in LIVE and (symbol is None or o["symbol"] == symbol)]

    def fetch_my_trades(self, symbol: str | None = None, since: Any = None) -> Sequence[Fill]:
        self._fail("before")
        with self.store.book() as book:
            self._match(book)
            found = {t["trade_id"]: t for o in self.store.newest_archived(KEEP_TRADES) for t in o["fills"]}
            found.update((t["trade_id"], t) for o in book["orders"].values() for t in o["fills"])
        trades = sorted(found.values(), key=_trade_number)[-KEEP_TRADES:]
        out = []
        for t in trades:
            if symbol is not None and t["symbol"] != symbol:
                continue
            stamp = parse_iso(t["timestamp"])
            if since is not None and stamp < since:
                continue
            out.append(Fill(trade_id=t["trade_id"], symbol=t["symbol"], side=Side(t["side"]), price=_d(t["price"]),
                            quantity=_d(t["quantity"]), timestamp=stamp, exchange_order_id=t["order_id"],
                            client_order_id=t["client_order_id"], fee=_d(t["fee"]), fee_currency=t["fee_currency"],
                            fee_rate=_d(t["fee_rate"]), taker=t["taker"]))
        return out

    def balances(self) -> dict[str, dict[str, Decimal]]:
        """Test/demo helper: {asset: {free, used}} without a matching pass."""
        book = self.store.peek() or self._new_book()
        return {a: {"free": _d(v["free"]), "used": _d(v["used"])} for a, v in book["balances"].items()}

    def close(self) -> None:
        """Nothing to release: the book is in the database."""
