"""tradeguard: the safety and persistence layer between trading bots and venues.

The public API: `Engine`, the plugin markers `hookimpl`/`hookspec`, the value
types and the typed exceptions.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("tradeguard")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

from tradeguard.errors import (  # noqa: E402
    CapabilityMissing,
    ConfirmationRequired,
    CredentialsError,
    DatabaseUnavailable,
    EmergencyStopActive,
    IntegrityError,
    NotFound,
    OrderNotSent,
    PluginError,
    RiskRejected,
    SchemaOutdated,
    TradeguardError,
    ValidationError,
    VaultLocked,
    VenueError,
    VenueRejected,
    VenueUnavailable,
    WrongMasterKey,
)
from tradeguard.hookspecs import hookimpl, hookspec  # noqa: E402
from tradeguard.types import (  # noqa: E402
    Decision,
    OrderRequest,
    OrderStatus,
    SettingSpec,
    Side,
    TradingMode,
    TradingState,
    Verdict,
)


def __getattr__(name: str):
    # Engine imports the storage layer; load it on first use so `import tradeguard` stays light.
    if name == "Engine":
        from tradeguard.engine import Engine

        return Engine
    raise AttributeError(name)


__all__ = [
    "CapabilityMissing",
    "ConfirmationRequired",
    "CredentialsError",
    "DatabaseUnavailable",
    "Decision",
    "EmergencyStopActive",
    "Engine",
    "IntegrityError",
    "NotFound",
    "OrderNotSent",
    "OrderRequest",
    "OrderStatus",
    "PluginError",
    "RiskRejected",
    "SchemaOutdated",
    "SettingSpec",
    "Side",
    "TradeguardError",
    "TradingMode",
    "TradingState",
    "ValidationError",
    "VaultLocked",
    "VenueError",
    "VenueRejected",
    "VenueUnavailable",
    "Verdict",
    "WrongMasterKey",
    "__version__",
    "hookimpl",
    "hookspec",
]
