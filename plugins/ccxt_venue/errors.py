"""Map ccxt's exceptions onto tradeguard's order-path outcomes.

ccxt's class alone is not always enough: Binance answers every 418/429 with
``DDoSProtection`` (the *parent* of ``RateLimitExceeded``), and its -2015
"Invalid API-key" surfaces as ``DDoSProtection`` once a signed call has
succeeded. So the venue's own error code, which ccxt keeps in the exception
message (``"binance {"code":-2015,"msg":"..."}"``), is read first.

Outcomes:

- `CredentialsError`  -- the keys were refused; names the account and points at
  ``tradeguard creds check``.
- `VenueRateLimited`  -- a `VenueUnavailable` the adapter retries after a backoff.
- `VenueUnavailable`  -- network error, timeout, venue down: the outcome of the
  request is unknown; look the order up by client id before retrying.
- `VenueRejected`     -- a definite refusal (insufficient funds, invalid order,
  bad symbol …) carrying the venue's code and message.
- `OrderMissing`      -- the venue does not know the order (a lookup answer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from tradeguard.errors import CredentialsError, VenueRejected, VenueUnavailable

#: Venue codes that mean "your credentials are wrong", whatever ccxt's class says.
CREDENTIAL_CODES = {
    "binance": {"-2014", "-2015", "-1022", "-2008"},
    "coinbase": {"UNAUTHENTICATED", "PERMISSION_DENIED", "authentication_error", "invalid_token", "unauthorized"},
}
#: Venue codes that mean "slow down" (retry after a backoff).
RATE_LIMIT_CODES = {
    "binance": {"-1003", "-1015"},
    "coinbase": {"rate_limit_exceeded", "RATE_LIMIT_EXCEEDED"},
}
#: Venue codes for a definite refusal of an order.
REJECT_CODES = {
    "binance": {"-1013", "-1111", "-1121", "-2010", "-1100", "-1102", "-1106", "-1115", "-1116", "-1117", "-4164"},
    "coinbase": {"INSUFFICIENT_FUND", "INVALID_ARGUMENT", "UNKNOWN_CANCEL_ORDER", "INVALID_LIMIT_PRICE_POST_ONLY"},
}
#: Venue codes (or message fragments) that mean "no such order".
NOT_FOUND_CODES = {
    "binance": {"-2013", "-2011"},
    "coinbase": {"NOT_FOUND", "UNKNOWN_CANCEL_ORDER"},
}
NOT_FOUND_TEXT = re.compile(r"not\s+found|does not exist|unknown order", re.IGNORECASE)
BAN_TEXT = re.compile(r"banned", re.IGNORECASE)


def ccxt_module() -> Any:
    """ccxt, imported on first use (it takes a third of a second: not at CLI start)."""
    import ccxt

    return ccxt


class VenueRateLimited(VenueUnavailable):
    """The venue asked us to slow down (HTTP 429/418, Binance -1003, Coinbase rate_limit_exceeded).

    The request was not executed; ``retry_after`` is the venue's hint in seconds, if any.
    """

    def __init__(self, message: str, retry_after: float | None = None, banned: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.banned = banned


class OrderMissing(Exception):
    """Internal: the venue says it does not know the order (turned into None or NotFound)."""


@dataclass(frozen=True)
class VenueDetail:
    """The venue's own error code and message, dug out of a ccxt exception."""

    code: str | None
    message: str


def venue_detail(exc: BaseException, venue: str, body: str | None = None) -> VenueDetail:
    """Extract ``code`` and ``msg`` from the JSON body ccxt puts in its messages.

    ccxt builds messages as ``"<exchange id> <body>"`` (or ``"<id> <METHOD> <url>"``
    for transport failures); the body is JSON for Binance and Coinbase.
    """
    text = " ".join(str(a) for a in getattr(exc, "args", ()) if a is not None) or str(exc)
    parsed = _json_in(text)
    if not isinstance(parsed, dict) and body:
        # ccxt's "broad" matches keep only the venue's msg: the raw response still has the code
        parsed = _json_in(body)
    body = parsed
    if isinstance(body, dict):
        code = message = None
        error_response = body.get("error_response")
        if isinstance(error_response, dict):  # coinbase create: HTTP 200, success false
            code = _first(error_response, ("error", "preview_failure_reason"))
            message = _first(error_response, ("message", "error_details"))
        code = code or _first(body, ("code", "error", "id", "failure_reason", "preview_failure_reason"))
        message = message or _first(body, ("msg", "message", "error_details", "error_description"))
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = code or _first(errors[0], ("id", "code"))
            message = message or _first(errors[0], ("message",))
        results = body.get("results")
        if isinstance(results, list) and results and isinstance(results[0], dict):
            code = code or _first(results[0], ("failure_reason",))
        if code is not None or message:
            if message is None and parsed is not None and text.strip() not in ("", venue):
                message = _strip_prefix(text, venue)
            return VenueDetail(None if code is None else str(code), _one_line(message or json.dumps(body)))
    return VenueDetail(None, _one_line(_strip_prefix(text, venue)))


def translate(exc: BaseException, *, venue: str, account: str, secrets: Iterable[str] = (),
              body: str | None = None) -> Exception:
    """The tradeguard exception for a ccxt exception raised by *venue* for *account*.

    *secrets* are scrubbed from the message (belt and braces: venues do not
    echo secrets, but a URL or a header might).
    """
    ccxt = ccxt_module()
    detail = venue_detail(exc, venue, body if isinstance(exc, ccxt.BaseError) and _answered(exc, ccxt) else None)
    code = detail.code
    message = _scrub(detail.message, secrets)
    where = f"{venue} (account {account})"
    venue_key = "coinbase" if venue.startswith("coinbase") else venue

    if code in CREDENTIAL_CODES.get(venue_key, ()) or isinstance(exc, ccxt.AuthenticationError):
        suffix = f" (venue code {code})" if code else ""
        return CredentialsError(
            f"{where} refused the account's API credentials: {message}{suffix}; "
            f"run `tradeguard creds check {account}`"
        )
    if code in NOT_FOUND_CODES.get(venue_key, ()) or isinstance(exc, ccxt.OrderNotFound):
        return OrderMissing(message)
    if isinstance(exc, ccxt.ExchangeError) and not isinstance(exc, ccxt.InsufficientFunds) and NOT_FOUND_TEXT.search(message or ""):
        # coinbase order-not-found is a plain ExchangeError (ccxt quirk)
        return OrderMissing(message)
    if code in RATE_LIMIT_CODES.get(venue_key, ()) or isinstance(exc, ccxt.DDoSProtection):
        banned = bool(BAN_TEXT.search(message))
        hint = " (IP banned by the venue)" if banned else ""
        return VenueRateLimited(f"{where} rate limit hit{hint}: {message}", retry_after=None, banned=banned)
    if isinstance(exc, (ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadRequest, ccxt.NotSupported)) or (
        code in REJECT_CODES.get(venue_key, ())
    ):
        return VenueRejected(f"{where} rejected the request: {message}", code=code or type(exc).__name__)
    if isinstance(exc, ccxt.OperationFailed):  # NetworkError, RequestTimeout, ExchangeNotAvailable, BadResponse …
        kind = "timed out" if isinstance(exc, ccxt.RequestTimeout) else "is unavailable"
        hint = "; check this machine's clock" if isinstance(exc, ccxt.InvalidNonce) else ""
        return VenueUnavailable(f"{where} {kind} ({type(exc).__name__}): {message}{hint}; the outcome is unknown")
    if isinstance(exc, ccxt.ExchangeError):
        # The venue answered with an error body: a definite answer, not a lost request.
        return VenueRejected(f"{where} rejected the request: {message}", code=code or type(exc).__name__)
    if isinstance(exc, ccxt.BaseError):
        return VenueUnavailable(f"{where} failed ({type(exc).__name__}): {message}")
    return exc if isinstance(exc, Exception) else VenueUnavailable(str(exc))


# -- helpers -------------------------------------------------------------------------------


def _answered(exc: BaseException, ccxt: Any) -> bool:
    """Whether the venue sent a response (so the last response body belongs to this error)."""
    return not isinstance(exc, (ccxt.RequestTimeout,)) and type(exc) is not ccxt.NetworkError


def _json_in(text: str) -> Any:
    start = text.find("{")
    while start != -1:
        try:
            return json.loads(text[start:])
        except ValueError:
            try:
                obj, _ = json.JSONDecoder().raw_decode(text[start:])
                return obj
            except ValueError:
                start = text.find("{", start + 1)
    return None


def _first(data: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = data.get(key)
        if value not in (None, ""):
            return value
    return None


def _strip_prefix(text: str, venue: str) -> str:
    text = text.strip()
    if text.startswith(venue + " "):
        text = text[len(venue) + 1 :]
    # "<METHOD> <url>": keep the path, drop the query string (it carries signatures)
    return re.sub(r"(https?://[^\s?]+)\?\S*", r"\1", text) or "no detail"


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:500]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    return text
