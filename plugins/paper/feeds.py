"""Price feeds for the paper venue.

A feed answers ``price(symbol, state)`` (the current price) and
``advance(symbol, state)`` (move one step, return the new price); *state* is a
dict persisted with the book, so a restarted process continues the same
series. Prices set with `PaperExchange.set_price` override any feed.

- `RandomWalkFeed` (default): deterministic for a seed; each step moves the
  price by a whole number of basis points drawn from a seeded generator.
- `CsvFeed`: one candle per step from a CSV file with a ``close`` column
  (``timestamp,open,high,low,close[,volume]``; optional ``symbol`` column).
- `FixedFeed`: a constant price per symbol (tests).
- `VenueFeed`: the current ticker of a real venue (dry-run PAPER accounts).
"""

from __future__ import annotations

import csv
import random
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from tradeguard.errors import ConfigError, VenueUnavailable
from tradeguard.money import positive

#: Where the random walk starts, per base asset (anything else starts at 100).
START_PRICES = {"BTC": Decimal("50000"), "ETH": Decimal("3000"), "SOL": Decimal("150"), "BNB": Decimal("600")}


def start_price(symbol: str) -> Decimal:
    return START_PRICES.get(symbol.split("/")[0], Decimal("100"))


class FixedFeed:
    """The same price every step."""

    def __init__(self, prices: Mapping[str, Decimal] | None = None, default: Decimal | None = None):
        self.prices = dict(prices or {})
        self.default = default

    def price(self, symbol: str, state: dict[str, Any]) -> Decimal:
        if symbol in self.prices:
            return self.prices[symbol]
        return self.default if self.default is not None else start_price(symbol)

    def advance(self, symbol: str, state: dict[str, Any]) -> Decimal:
        return self.price(symbol, state)


class RandomWalkFeed:
    """A seeded random walk: step *n* of a symbol always gives the same move for the same seed."""

    def __init__(self, seed: int = 42, volatility_bp: int = 20):
        self.seed = seed
        self.volatility_bp = volatility_bp

    def price(self, symbol: str, state: dict[str, Any]) -> Decimal:
        entry = state.get(symbol)
        return Decimal(entry["price"]) if entry else start_price(symbol)

    def advance(self, symbol: str, state: dict[str, Any]) -> Decimal:
        entry = state.get(symbol) or {"price": str(start_price(symbol)), "step": 0}
        step = entry["step"] + 1
        rnd = random.Random(f"{self.seed}:{symbol}:{step}")
        move = Decimal(rnd.randint(-self.volatility_bp, self.volatility_bp)) / Decimal(10000)
        price = (Decimal(entry["price"]) * (1 + move)).quantize(Decimal("0.01"))
        if price <= 0:
            price = Decimal("0.01")
        state[symbol] = {"price": str(price), "step": step}
        return price


class CsvFeed:
    """Candles from a CSV file, one per step (the last candle repeats at the end)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with self.path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as exc:
            raise ConfigError(f"price feed CSV {self.path}: {exc.strerror}") from None
        if not rows or "close" not in rows[0]:
            raise ConfigError(f"price feed CSV {self.path}: expected a header with a 'close' column")
        self.series: dict[str | None, list[Decimal]] = {}
        for number, row in enumerate(rows, start=2):
            try:
                close = positive(row["close"], f"{self.path.name} line {number} close")
            except Exception as exc:
                raise ConfigError(str(exc)) from None
            self.series.setdefault(row.get("symbol") or None, []).append(close)

    def _series(self, symbol: str) -> list[Decimal]:
        return self.series.get(symbol) or self.series.get(None) or next(iter(self.series.values()))

    def price(self, symbol: str, state: dict[str, Any]) -> Decimal:
        series = self._series(symbol)
        return series[min(state.get(symbol, 0), len(series) - 1)]

    def advance(self, symbol: str, state: dict[str, Any]) -> Decimal:
        series = self._series(symbol)
        state[symbol] = min(state.get(symbol, -1) + 1, len(series) - 1)
        return series[state[symbol]]


class VenueFeed:
    """Prices from a real venue's ticker (network; VenueUnavailable when it is down)."""

    def __init__(self, adapter: Any):
        self.adapter = adapter

    def price(self, symbol: str, state: dict[str, Any]) -> Decimal:
        ticker = self.adapter.fetch_ticker(symbol)
        if ticker is None:
            raise VenueUnavailable(f"no ticker for {symbol}")
        state[symbol] = str(ticker.last)
        return ticker.last

    def advance(self, symbol: str, state: dict[str, Any]) -> Decimal:
        return self.price(symbol, state)


def make_feed(spec: str, *, seed: int = 42, volatility_bp: int = 20) -> Any:
    """A feed from a setting: ``random_walk``, ``fixed:PRICE`` or ``csv:PATH``."""
    spec = (spec or "random_walk").strip()
    if spec == "random_walk":
        return RandomWalkFeed(seed, volatility_bp)
    if spec.startswith("fixed:"):
        return FixedFeed(default=positive(spec[6:], "price_feed fixed price"))
    if spec == "fixed":
        return FixedFeed()
    if spec.startswith("csv:"):
        return CsvFeed(spec[4:])
    raise ConfigError(f"price_feed: expected random_walk, fixed:PRICE or csv:PATH, got {spec!r}")
