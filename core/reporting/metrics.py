"""Performance figures as pure functions on Decimals (no database here).

Conventions (stated in every report):

* Daily returns are taken over UTC calendar days. A day's return is
  ``(E_close - E_open - F) / (E_open + F)`` where ``E_open`` is the equity
  at the end of the previous day and ``F`` the day's net cash flow
  (deposits minus withdrawals), counted as if it arrived at the start of
  the day: cash flows are never returns.
* Sharpe = mean / sample standard deviation (n - 1) of the daily returns,
  x sqrt(365); Sortino = mean / downside deviation x sqrt(365), with the
  downside deviation sqrt(Σ min(r, 0)² / n) against a target of 0. Crypto
  markets trade every day of the year, hence sqrt(365), not sqrt(252). The
  risk-free rate is 0.
* Maximum drawdown is measured on equity minus the cash flows since the
  start of the period, so a withdrawal is not a drawdown.
* Ratios are rounded half-even to 8 decimal places.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

ZERO = Decimal(0)
PERIODS_PER_YEAR = 365
ANNUALISATION = "daily returns x sqrt(365) (crypto trades every day), risk-free rate 0"
RATIO_PLACES = Decimal("0.00000001")
CONTEXT = decimal.Context(prec=60)


def ratio(value: Decimal | None) -> Decimal | None:
    """*value* rounded half-even to 8 decimal places (None stays None)."""
    if value is None:
        return None
    with decimal.localcontext(CONTEXT):
        return value.quantize(RATIO_PLACES, rounding=decimal.ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Drawdown:
    """The deepest peak-to-trough fall of a curve."""

    amount: Decimal  # peak minus trough, >= 0
    fraction: Decimal | None  # amount / peak (None when the peak is not positive)
    peak_index: int | None
    trough_index: int | None


def max_drawdown(curve: Sequence[Decimal]) -> Drawdown:
    """The largest fall from a running peak of *curve* (empty or rising: 0)."""
    best = Drawdown(ZERO, ZERO if curve else None, None, None)
    if not curve:
        return best
    with decimal.localcontext(CONTEXT):
        peak, peak_at = curve[0], 0
        for index, value in enumerate(curve):
            if value > peak:
                peak, peak_at = value, index
            fall = peak - value
            if fall > best.amount:
                best = Drawdown(fall, ratio(fall / peak) if peak > 0 else None, peak_at, index)
    return best


def daily_return(open_equity: Decimal, close_equity: Decimal, flow: Decimal) -> Decimal | None:
    """One day's return with the day's net cash flow taken out (None without a positive capital base)."""
    with decimal.localcontext(CONTEXT):
        base = open_equity + flow
        if base <= 0:
            return None
        return (close_equity - open_equity - flow) / base


def mean(values: Sequence[Decimal]) -> Decimal | None:
    """Arithmetic mean (None when empty)."""
    if not values:
        return None
    with decimal.localcontext(CONTEXT):
        return sum(values, ZERO) / len(values)


def sample_std(values: Sequence[Decimal]) -> Decimal | None:
    """Sample standard deviation (n - 1); None with fewer than two values."""
    if len(values) < 2:
        return None
    with decimal.localcontext(CONTEXT):
        mu = sum(values, ZERO) / len(values)
        return (sum(((v - mu) ** 2 for v in values), ZERO) / (len(values) - 1)).sqrt()


def downside_deviation(values: Sequence[Decimal]) -> Decimal | None:
    """sqrt(Σ min(r, 0)² / n) against a target of 0; None when empty."""
    if not values:
        return None
    with decimal.localcontext(CONTEXT):
        return (sum((min(v, ZERO) ** 2 for v in values), ZERO) / len(values)).sqrt()


def sharpe(returns: Sequence[Decimal], periods: int = PERIODS_PER_YEAR) -> Decimal | None:
    """Annualised Sharpe ratio of periodic *returns* (None with < 2 returns or no variation)."""
    std = sample_std(returns)
    if not std:
        return None
    with decimal.localcontext(CONTEXT):
        return ratio(mean(returns) / std * Decimal(periods).sqrt())


def sortino(returns: Sequence[Decimal], periods: int = PERIODS_PER_YEAR) -> Decimal | None:
    """Annualised Sortino ratio (None with < 2 returns or no losing period)."""
    if len(returns) < 2:
        return None
    down = downside_deviation(returns)
    if not down:
        return None
    with decimal.localcontext(CONTEXT):
        return ratio(mean(returns) / down * Decimal(periods).sqrt())


@dataclass(frozen=True)
class TradeStats:
    """Win/loss figures over closing fills (gross of fees)."""

    closed: int
    wins: int
    losses: int
    win_rate: Decimal | None
    gross_profit: Decimal
    gross_loss: Decimal  # <= 0
    average_win: Decimal | None
    average_loss: Decimal | None  # <= 0
    largest_win: Decimal | None
    largest_loss: Decimal | None
    profit_factor: Decimal | None  # None when nothing was lost


def trade_stats(pnls: Sequence[Decimal]) -> TradeStats:
    """Win rate, averages and profit factor of the realized PnL of closing fills.

    A fill that closes at exactly 0 counts as closed, neither win nor loss.
    """
    with decimal.localcontext(CONTEXT):
        wins = [p for p in pnls if p > 0]
        losses = [p for p in pnls if p < 0]
        profit = sum(wins, ZERO)
        loss = sum(losses, ZERO)
        return TradeStats(
            closed=len(pnls),
            wins=len(wins),
            losses=len(losses),
            win_rate=ratio(Decimal(len(wins)) / len(pnls)) if pnls else None,
            gross_profit=profit,
            gross_loss=loss,
            average_win=ratio(profit / len(wins)) if wins else None,
            average_loss=ratio(loss / len(losses)) if losses else None,
            largest_win=max(wins) if wins else None,
            largest_loss=min(losses) if losses else None,
            profit_factor=ratio(profit / -loss) if losses else None,
        )
