"""Shared value types passed between the core and plugins.

Frozen dataclasses with Decimal amounts; constructors validate, so a plugin
cannot hand the core a negative quantity or a float price.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from tradeguard.errors import ValidationError
from tradeguard.money import non_negative, positive, to_decimal


class Side(str, enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, enum.Enum):
    MARKET = "market"
    LIMIT = "limit"


class MarketKind(str, enum.Enum):
    SPOT = "spot"
    MARGIN = "margin"
    FUTURES = "futures"


class OrderStatus(str, enum.Enum):
    """An order's state in tradeguard (the venue's own word is kept beside it)."""

    PENDING_CONFIRMATION = "PENDING_CONFIRMATION"
    PENDING_SUBMIT = "PENDING_SUBMIT"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.FAILED, OrderStatus.EXPIRED}
)


class TradingMode(str, enum.Enum):
    PAPER = "PAPER"
    LIVE = "LIVE"


class TradingState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Verdict(str, enum.Enum):
    ALLOW = "allow"
    CONFIRM = "require_confirmation"
    BLOCK = "block"


class Severity(str, enum.Enum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


def _opt(value: Any, name: str, check=to_decimal) -> Decimal | None:
    return None if value is None else check(value, name)


@dataclass(frozen=True)
class OrderRequest:
    """What a bot asks for. Quantities are in the base asset, prices in the quote."""

    account: str
    symbol: str
    side: Side
    quantity: Decimal
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    leverage: Decimal = Decimal(1)
    reduce_only: bool = False
    client_order_id: str | None = None
    market: MarketKind = MarketKind.SPOT

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.symbol or "/" not in self.symbol:
            raise ValidationError(f"symbol: expected BASE/QUOTE such as BTC/USDT, got {self.symbol!r}")
        try:
            set_(self, "side", Side(str(getattr(self.side, "value", self.side)).lower()))
        except ValueError:
            raise ValidationError(f"side: expected buy or sell, got {self.side!r}") from None
        try:
            set_(self, "type", OrderType(str(getattr(self.type, "value", self.type)).lower()))
        except ValueError:
            raise ValidationError(f"type: expected market or limit, got {self.type!r}") from None
        set_(self, "market", MarketKind(getattr(self.market, "value", self.market)))
        set_(self, "quantity", positive(self.quantity, "quantity"))
        set_(self, "price", _opt(self.price, "price", positive))
        set_(self, "stop_loss", _opt(self.stop_loss, "stop_loss", positive))
        set_(self, "take_profit", _opt(self.take_profit, "take_profit", positive))
        set_(self, "leverage", positive(self.leverage, "leverage"))
        if self.type is OrderType.LIMIT and self.price is None:
            raise ValidationError("price: a limit order needs a price")

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1].split(":")[0]


@dataclass(frozen=True)
class Market:
    """A tradable market as the venue describes it."""

    symbol: str
    base: str
    quote: str
    kind: MarketKind = MarketKind.SPOT
    amount_step: Decimal | None = None  # quantity increment
    price_step: Decimal | None = None  # price tick
    min_amount: Decimal | None = None
    min_notional: Decimal | None = None
    active: bool = True


@dataclass(frozen=True)
class Ticker:
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal
    timestamp: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "last", positive(self.last, "last"))


@dataclass(frozen=True)
class Balance:
    """Holdings of one asset: free + used = total."""

    asset: str
    free: Decimal
    used: Decimal
    total: Decimal

    def __post_init__(self) -> None:
        for name in ("free", "used", "total"):
            object.__setattr__(self, name, non_negative(getattr(self, name), name))


@dataclass(frozen=True)
class Fill:
    """One execution reported by the venue; unique per (venue, trade_id)."""

    trade_id: str
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    timestamp: datetime
    exchange_order_id: str | None = None
    client_order_id: str | None = None
    fee: Decimal = Decimal(0)
    fee_currency: str | None = None
    fee_rate: Decimal | None = None
    taker: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "side", Side(getattr(self.side, "value", self.side)))
        set_(self, "price", positive(self.price, "price"))
        set_(self, "quantity", positive(self.quantity, "quantity"))
        set_(self, "fee", non_negative(self.fee, "fee"))


@dataclass(frozen=True)
class VenueOrder:
    """The venue's view of an order."""

    client_order_id: str | None
    exchange_order_id: str | None
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    status: OrderStatus
    price: Decimal | None = None
    filled: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    fee_currency: str | None = None
    exchange_status: str | None = None
    fills: tuple[Fill, ...] = ()
    timestamp: datetime | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "side", Side(getattr(self.side, "value", self.side)))
        set_(self, "type", OrderType(getattr(self.type, "value", self.type)))
        set_(self, "status", OrderStatus(getattr(self.status, "value", self.status)))
        set_(self, "quantity", non_negative(self.quantity, "quantity"))
        set_(self, "filled", non_negative(self.filled, "filled"))
        if self.filled > self.quantity:
            raise ValidationError(f"venue reported filled {self.filled} > quantity {self.quantity}")


@dataclass(frozen=True)
class VenuePosition:
    """A derivatives position as the venue reports it."""

    symbol: str
    side: Side
    quantity: Decimal
    entry_price: Decimal
    leverage: Decimal = Decimal(1)
    unrealized_pnl: Decimal = Decimal(0)


@dataclass(frozen=True)
class TransferRequest:
    """A wallet transfer: *amount* of *asset* (native symbol or token) to *to*."""

    account: str
    to: str
    amount: Decimal
    asset: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", positive(self.amount, "amount"))


@dataclass(frozen=True)
class Receipt:
    """An on-chain transaction's outcome."""

    tx_hash: str
    status: str  # "confirmed" | "reverted" | "pending"
    block_number: int | None = None
    gas_used: int | None = None
    gas_price: int | None = None  # wei per gas (effective)


@dataclass(frozen=True)
class Decision:
    """A risk rule's verdict on one request, with the numbers it looked at."""

    verdict: Verdict
    rule: str = ""
    reason: str = ""
    severity: Severity = Severity.INFO
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def allow(cls, reason: str = "", **metrics: Any) -> "Decision":
        return cls(Verdict.ALLOW, reason=reason, metrics=metrics)

    @classmethod
    def block(cls, reason: str, severity: Severity = Severity.CRITICAL, **metrics: Any) -> "Decision":
        return cls(Verdict.BLOCK, reason=reason, severity=severity, metrics=metrics)

    @classmethod
    def confirm(cls, reason: str, **metrics: Any) -> "Decision":
        return cls(Verdict.CONFIRM, reason=reason, severity=Severity.WARNING, metrics=metrics)

    @classmethod
    def warn(cls, reason: str, **metrics: Any) -> "Decision":
        """Allowed, but close to a limit: logged as a WARNING risk log."""
        return cls(Verdict.ALLOW, reason=reason, severity=Severity.WARNING, metrics=metrics)


@dataclass(frozen=True)
class SettingSpec:
    """A setting a plugin declares (for an account, a target …).

    Secret settings are stored encrypted by the vault and handed only to the
    plugin that declared them, when it builds its client.
    """

    name: str
    type: type = str
    secret: bool = False
    required: bool = False
    default: Any = None
    help: str = ""
