"""What a plugin implements: the adapter protocols for each kind of plugin.

A plugin registers a *factory* under a name (see `hookspecs`). The core calls
the factory with an `tradeguard.adapters.AdapterConfig` when it needs an adapter and only ever talks to the adapter through
these methods, so a third-party adapter is a drop-in.

Optional capabilities (leverage, margin, native OCO, derivatives positions) are
declared in ``capabilities``; the core checks with `require_capability` before
use so a venue without one fails with a clear message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import IO, Any, Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from tradeguard.errors import CapabilityMissing
from tradeguard.types import (
    Balance,
    Decision,
    Fill,
    Market,
    OrderRequest,
    Receipt,
    SettingSpec,
    Ticker,
    TransferRequest,
    VenueOrder,
    VenuePosition,
)

# Optional exchange capabilities.
CAP_SET_LEVERAGE = "set_leverage"
CAP_ADD_MARGIN = "add_margin"
CAP_NATIVE_OCO = "native_oco"
CAP_POSITIONS = "fetch_positions"
CAP_CASH_FLOWS = "fetch_cash_flows"


@runtime_checkable
class ExchangeAdapter(Protocol):
    """A connection to one venue for one account."""

    name: str
    testnet: bool
    capabilities: frozenset[str]

    def load_markets(self, reload: bool = False) -> Mapping[str, Market]:
        """Markets by symbol; cached per process, *reload* refreshes."""

    def fetch_ticker(self, symbol: str) -> Ticker: ...

    def fetch_balance(self) -> Sequence[Balance]: ...

    def fetch_positions(self) -> Sequence[VenuePosition]:
        """Open derivatives positions (spot venues return an empty list)."""

    def create_order(self, request: OrderRequest, client_order_id: str) -> VenueOrder:
        """Send an order tagged with *client_order_id*.

        Raises VenueUnavailable when the outcome is unknown (timeout, network),
        VenueRejected for a definite refusal, CredentialsError for bad keys.
        """

    def cancel_order(self, symbol: str, exchange_order_id: str | None, client_order_id: str | None) -> VenueOrder: ...

    def fetch_order(self, symbol: str, exchange_order_id: str) -> VenueOrder: ...

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The order the venue knows under *client_order_id*, or None if it never arrived."""

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[VenueOrder]: ...

    def fetch_my_trades(self, symbol: str | None = None, since: Any = None) -> Sequence[Fill]: ...

    def close(self) -> None:
        """Release connections. Called when the Engine closes."""


@runtime_checkable
class WalletAdapter(Protocol):
    """An on-chain wallet belonging to one account."""

    address: str
    network: str
    chain_id: int
    testnet: bool

    def get_balance(self, asset: str | None = None) -> Decimal: ...

    def transfer(self, request: TransferRequest) -> Receipt: ...

    def sign_message(self, message: bytes | str) -> str: ...

    def close(self) -> None: ...


@runtime_checkable
class RiskRule(Protocol):
    """A check run on every order request, inside the account's lock.

    ``check`` returns a `Decision`; raising, or lacking the data it needs, is a
    block (rules fail closed).
    """

    name: str
    description: str
    settings: Sequence[SettingSpec]
    enabled_by_default: bool

    def check(self, request: OrderRequest, context: Any, settings: Mapping[str, Any]) -> Decision: ...


@runtime_checkable
class BackupTarget(Protocol):
    """Somewhere backups are kept. Streams, never whole files in memory."""

    url: str

    def put(self, name: str, stream: IO[bytes]) -> int:
        """Store *stream* under *name* atomically; return the byte count."""

    def get(self, name: str) -> IO[bytes]: ...

    def list(self) -> Iterable[str]: ...

    def delete(self, name: str) -> None: ...


def supports(adapter: Any, capability: str) -> bool:
    """Whether *adapter* declares the optional *capability* (see ``CAP_*``)."""
    return capability in getattr(adapter, "capabilities", frozenset())


def require_capability(adapter: Any, capability: str) -> None:
    """Raise CapabilityMissing unless *adapter* declares *capability*."""
    caps = getattr(adapter, "capabilities", frozenset())
    if capability not in caps:
        name = getattr(adapter, "name", type(adapter).__name__)
        raise CapabilityMissing(f"{name} does not support {capability.replace('_', ' ')}")


def iter_chunks(stream: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """Read *stream* in chunks of *size* bytes."""
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk
