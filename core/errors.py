"""Typed exceptions. Each carries the CLI exit code the design assigns to it.

Exit codes: 0 done; 1 venue or other runtime failure; 2 bad input or usage;
3 order not sent (refused by a rule or the trading state, or waiting for
confirmation); 4 integrity failure (audit or backup verification).

Messages are one line and never contain a secret.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_SENT = 3
EXIT_INTEGRITY = 4


class TradeguardError(Exception):
    """Base class of every error tradeguard raises on purpose."""

    exit_code = EXIT_RUNTIME


# -- bad input (2) -------------------------------------------------------------
class ValidationError(TradeguardError, ValueError):
    """Input that tradeguard refuses: a value, a name, an option."""

    exit_code = EXIT_BAD_INPUT


class NotFound(ValidationError):
    """A named account, order, backup … does not exist."""


class ConfigError(ValidationError):
    """A malformed setting, URL or configuration file."""


class CapabilityMissing(ValidationError):
    """The venue or wallet adapter lacks an optional capability a command needs."""


# -- runtime (1) ---------------------------------------------------------------
class DatabaseUnavailable(TradeguardError):
    """The database could not be reached or opened."""


class SchemaOutdated(TradeguardError):
    """The database schema is older than this tradeguard; run `tradeguard db migrate`."""


class PluginError(TradeguardError):
    """A plugin failed to load or registered something invalid."""


class DuplicateRegistration(PluginError):
    """Two plugins registered the same name for the same kind."""


class VenueError(TradeguardError):
    """The exchange or chain failed; see subclasses for what is known of the outcome."""


class VenueUnavailable(VenueError):
    """Network error or timeout: the outcome of the request is unknown."""


class VenueRejected(VenueError):
    """The venue definitely refused the request (insufficient funds, invalid order …)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class CredentialsError(VenueError):
    """The venue refused the account's credentials."""


# -- order not sent (3) --------------------------------------------------------
class OrderNotSent(TradeguardError):
    """The order was recorded but not sent to the venue."""

    exit_code = EXIT_NOT_SENT
    status = "not_sent"

    def __init__(self, message: str, order_id: int | None = None):
        super().__init__(message)
        self.order_id = order_id


class RiskRejected(OrderNotSent):
    """A risk rule blocked the order."""

    status = "rejected"


class ConfirmationRequired(OrderNotSent):
    """The order waits for an explicit `order confirm`."""

    status = "pending_confirmation"


class EmergencyStopActive(OrderNotSent):
    """The account or installation is HALTED (or REDUCING and the order adds exposure)."""

    status = "halted"


# -- vault ---------------------------------------------------------------------
class VaultError(TradeguardError):
    """A problem with the master key or an encrypted value."""

    exit_code = EXIT_BAD_INPUT


class WrongMasterKey(VaultError):
    """The master key given does not open this installation's vault."""


class VaultLocked(VaultError):
    """The operation needs a secret and no master key was given."""


# -- integrity (4) -------------------------------------------------------------
class IntegrityError(TradeguardError):
    """Audit or backup verification failed."""

    exit_code = EXIT_INTEGRITY
