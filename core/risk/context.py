"""What a risk rule sees: the request, the account and lazily computed
numbers (position, exposure, daily PnL, available cash …).

Everything is read inside the account's lock, so the numbers cannot change
between the check and the order insert. A number that cannot be computed
(no ticker, no balance) raises `MissingData`; the risk engine turns that into
a block (rules fail closed).
"""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal
from typing import Any

from tradeguard.clock import utcnow
from tradeguard.errors import TradeguardError
from tradeguard.orders.lifecycle import ACTIVE_STATUSES
from tradeguard.orders.ledger import CONTEXT, remaining
from tradeguard.risk.daily import realized_since
from tradeguard.storage import database, rows
from tradeguard.storage.models import Account, Order, Position
from tradeguard.types import Market, OrderRequest, OrderStatus, Side, Ticker, TradingMode, TradingState

ZERO = Decimal(0)
_ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATUSES))
_ACTIVE_WHERE = "account_id = {p} AND status IN (" + ", ".join(["{p}"] * len(_ACTIVE)) + ")"
_RECENT = ("SELECT COUNT(*) FROM {l}order{r} WHERE account_id = {p} AND created_at >= {p} AND status != {p} "
           "AND imported = {p}")
_REJECTED = OrderStatus.REJECTED.value


class MissingData(TradeguardError):
    """A rule needs a number that is not available (no ticker, no balance …)."""


class cached_per_context:  # noqa: N801 - used like functools.cached_property
    """`functools.cached_property` without its lock: computed on first access, then read from the
    instance's ``__dict__`` (a context is used by one thread, inside the account lock)."""

    def __init__(self, func: Any):
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class RiskContext:
    """The data rules check a request against (one per request, inside the lock).

    Database reads and the numbers derived only from them and the request (position, whether
    the order reduces it, unrealized PnL) are computed once per context; numbers that read the
    account row (cash, trading state) are computed on each access.

    :ivar account: the account row (locked).
    :ivar request: the `OrderRequest`.
    :ivar market: the venue's `Market` for the symbol, or None.
    :ivar ticker: the current `Ticker`, or None if it could not be fetched.
    :ivar venue_testnet: whether the venue adapter is on a testnet/sandbox.
    :ivar installation_state: the installation-wide `TradingState`.
    :ivar emergency: True for the reduce-only orders an emergency stop places.
    """

    def __init__(self, account: Account, request: OrderRequest, *, market: Market | None = None,
                 ticker: Ticker | None = None, ticker_error: str | None = None, venue_testnet: bool = True,
                 installation_state: TradingState = TradingState.ACTIVE, emergency: bool = False,
                 exclude_order: int | None = None):
        self.account = account
        self.request = request
        self.market = market
        self.ticker = ticker
        self.ticker_error = ticker_error
        self.venue_testnet = venue_testnet
        self.installation_state = installation_state
        self.emergency = emergency
        self.exclude_order = exclude_order

    # -- states and flags ------------------------------------------------------------------

    @property
    def trading_state(self) -> TradingState:
        """The stricter of the account's and the installation's state."""
        account, installation = self.account.trading_state, self.installation_state
        return installation if _STRICTNESS[installation] > _STRICTNESS[account] else account

    @property
    def is_live(self) -> bool:
        return self.account.mode is TradingMode.LIVE

    # -- prices ----------------------------------------------------------------------------

    @property
    def price(self) -> Decimal:
        """The price the order is valued at: its limit price, else the ticker's last price."""
        if self.request.price is not None:
            return self.request.price
        return self.mark_price

    @property
    def mark_price(self) -> Decimal:
        """The current ticker's last price (MissingData without a ticker)."""
        if self.ticker is None:
            raise MissingData(f"no ticker for {self.request.symbol}" + (f": {self.ticker_error}" if self.ticker_error else ""))
        return self.ticker.last

    @property
    def order_notional(self) -> Decimal:
        with decimal.localcontext(CONTEXT):
            return self.request.quantity * self.price

    # -- orders and positions --------------------------------------------------------------

    @cached_per_context
    def open_orders(self) -> list[Order]:
        """The account's orders that still count (awaiting confirmation, submit, or open)."""
        found = rows.select(Order, _ACTIVE_WHERE, (self.account.id, *_ACTIVE))
        return [o for o in found if o.id != self.exclude_order]

    @cached_per_context
    def positions(self) -> list[Position]:
        """Non-flat positions."""
        return [p for p in rows.select(Position, "account_id = {p}", (self.account.id,)) if p.quantity != 0]

    @cached_per_context
    def position_quantity(self) -> Decimal:
        """Signed quantity held in the request's symbol."""
        symbol, market = self.request.symbol, self.request.market
        for position in self.positions:
            if position.symbol == symbol and position.market == market:
                return position.quantity
        return ZERO

    def pending_quantity(self, side: Side, symbol: str | None = None, *, reducing: bool | None = None) -> Decimal:
        """Unfilled quantity of active orders on *side* in *symbol* (default: the request's)."""
        symbol = symbol or self.request.symbol
        total = ZERO
        for order in self.open_orders:
            if order.symbol == symbol and order.side is side and (reducing is None or order.reduce_only == reducing):
                total += remaining(order)
        return total

    @property
    def signed_quantity(self) -> Decimal:
        return self.request.quantity if self.request.side is Side.BUY else -self.request.quantity

    @property
    def projected_quantity(self) -> Decimal:
        """Position after this order and every active order on the same side fill (signed)."""
        same_side = self.pending_quantity(self.request.side, reducing=False)
        signed_pending = same_side if self.request.side is Side.BUY else -same_side
        return self.position_quantity + signed_pending + self.signed_quantity

    @cached_per_context
    def is_reducing(self) -> bool:
        """True if the order only reduces the current position (or is reduce-only)."""
        if self.request.reduce_only:
            return True
        position = self.position_quantity
        if position == 0 or (position > 0) == (self.request.side is Side.BUY):
            return False
        already = self.pending_quantity(self.request.side)
        return self.request.quantity + already <= abs(position)

    @property
    def open_symbols(self) -> set[str]:
        """Symbols with a position or an active order that opens one."""
        symbols = {p.symbol for p in self.positions}
        symbols |= {o.symbol for o in self.open_orders if not o.reduce_only}
        return symbols

    def _mark(self, position: Position) -> Decimal:
        if self.ticker is not None and position.symbol == self.request.symbol:
            return self.ticker.last
        if position.average_cost and position.quantity:
            return position.average_cost + position.unrealized_pnl / position.quantity
        return position.average_cost

    @property
    def total_exposure(self) -> Decimal:
        """Σ |quantity| × mark price over open positions (quote currency)."""
        total = ZERO
        with decimal.localcontext(CONTEXT):
            for p in self.positions:
                total += abs(p.quantity) * self._mark(p)
        return total

    @cached_per_context
    def unrealized_pnl(self) -> Decimal:
        total = ZERO
        with decimal.localcontext(CONTEXT):
            for p in self.positions:
                total += (self._mark(p) - p.average_cost) * p.quantity
        return total

    # -- money -----------------------------------------------------------------------------

    @property
    def available_cash(self) -> Decimal:
        """Cash not reserved by open orders (MissingData if the account has no known balance)."""
        account = self.account
        if account.current_cash == 0 and account.initial_capital == 0 and account.last_balance_sync is None \
                and account.frozen_cash == 0 and not self.positions:
            raise MissingData(
                f"no balance known for account {account.name!r}: give it --initial-capital or run `tradeguard sync`"
            )
        return account.current_cash - account.frozen_cash

    @property
    def equity(self) -> Decimal:
        total = ZERO
        with decimal.localcontext(CONTEXT):
            for p in self.positions:
                total += p.quantity * self._mark(p)
            return self.account.current_cash + total

    @cached_per_context
    def realized_pnl_today(self) -> Decimal:
        """Realized PnL minus quote-currency fees of trades since 00:00 UTC (a running figure, `daily`)."""
        midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        with decimal.localcontext(CONTEXT):
            return realized_since(database.obj, self.account.id, midnight, self.account.quote_currency)

    @property
    def daily_pnl(self) -> Decimal:
        """Realized (since 00:00 UTC) plus unrealized PnL."""
        return self.realized_pnl_today + self.unrealized_pnl

    @property
    def daily_loss(self) -> Decimal:
        """The loss today as a positive number (0 when in profit)."""
        return max(-self.daily_pnl, ZERO)

    def orders_since(self, seconds: int, *, cap: int | None = None) -> int:
        """Orders created on this account in the last *seconds* (rejected and imported ones excluded);
        with *cap*, counting stops there (a limit check needs no more)."""
        since = utcnow() - dt.timedelta(seconds=seconds)
        db = database.obj
        sql = _RECENT.format(p=db.param, l=db.quote[0], r=db.quote[1])
        params: tuple = (self.account.id, Order.created_at.db_value(since), _REJECTED, False)
        if cap is not None:
            sql = f"SELECT COUNT(*) FROM ({sql.replace('COUNT(*)', '1', 1)} LIMIT {int(cap)}) AS recent"
        return int(db.execute_sql(sql, params).fetchone()[0])

    def snapshot(self) -> dict[str, Any]:
        """The numbers stored with a risk log row (each None if unavailable)."""
        out: dict[str, Any] = {}
        for key, getter in (("current_position_size", lambda: abs(self.position_quantity) * self.mark_price),
                            ("daily_loss", lambda: self.daily_loss),
                            ("available_balance", lambda: self.available_cash),
                            ("total_exposure", lambda: self.total_exposure)):
            try:
                out[key] = getter()
            except Exception:
                out[key] = None
        return out
