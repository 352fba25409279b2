"""USD values of assets and fills, priced through a venue adapter.

A stablecoin (or USD itself) is worth 1 USD; anything else is priced by the
venue's ticker against USDT, USD or USDC, whichever market the venue has.
Prices are fetched once per `UsdPricer` (one sync, one order) and never
guessed: an asset that cannot be priced has no USD value (None).
"""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any, Hashable

from tradeguard.errors import TradeguardError
from tradeguard.types import Fill

log = logging.getLogger("tradeguard.valuation")

#: Assets valued at exactly 1 USD.
USD_STABLE = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "DAI", "TUSD", "USDP", "PYUSD"})
QUOTES = ("USDT", "USD", "USDC")
#: Seconds a price fetched for one account is reused for other accounts on the same venue.
SHARED_PRICE_TTL = 30.0

_shared: dict[tuple[Hashable, str], tuple[float, Decimal | None]] = {}
_shared_lock = threading.Lock()


def clear_price_cache() -> None:
    """Forget the prices shared between accounts (tests)."""
    with _shared_lock:
        _shared.clear()


class UsdPricer:
    """Prices assets in USD through *adapter*'s markets and tickers (cached per instance)."""

    def __init__(self, adapter: Any):
        self.adapter = adapter
        self._prices: dict[str, Decimal | None] = {}

    def price(self, asset: str) -> Decimal | None:
        """USD per unit of *asset*, or None if the venue cannot price it."""
        asset = asset.upper()
        if asset in USD_STABLE:
            return Decimal(1)
        if asset not in self._prices:
            self._prices[asset] = self._shared_lookup(asset)
        return self._prices[asset]

    def _shared_lookup(self, asset: str) -> Decimal | None:
        """Accounts on the same venue (``adapter.price_cache_key``) share a price for a few seconds."""
        key = getattr(self.adapter, "price_cache_key", None)
        if key is None:
            return self._lookup(asset)
        now = time.monotonic()
        with _shared_lock:
            hit = _shared.get((key, asset))
        if hit is not None and now - hit[0] < SHARED_PRICE_TTL:
            return hit[1]
        price = self._lookup(asset)
        with _shared_lock:
            _shared[(key, asset)] = (now, price)
        return price

    def _lookup(self, asset: str) -> Decimal | None:
        try:
            markets = self.adapter.load_markets()
        except (TradeguardError, AttributeError):
            markets = {}
        for quote in QUOTES:
            symbol = f"{asset}/{quote}"
            if markets and symbol not in markets:
                continue
            try:
                return self.adapter.fetch_ticker(symbol).last
            except TradeguardError as exc:
                log.info("no USD price for %s via %s: %s", asset, symbol, exc)
        return None

    def value(self, asset: str, amount: Decimal) -> Decimal | None:
        """*amount* of *asset* in USD, or None."""
        price = self.price(asset)
        return None if price is None else amount * price

    def fill_value(self, fill: Fill) -> Decimal | None:
        """A fill's notional in USD: quote amount x the quote's USD price."""
        quote = fill.symbol.split("/")[1].split(":")[0]
        return self.value(quote, fill.price * fill.quantity)
