"""tradeguard plugin: the ``trading_hours`` risk rule.

Blocks orders placed outside a daily UTC window on chosen weekdays. The
window may wrap midnight (``start = 22:00``, ``end = 06:00``). Orders that
only reduce exposure (``reduce_only``) are allowed at any time unless
``block_reducing`` is true, so a bot can always close a position.
"""

from __future__ import annotations

from tradeguard import hookimpl

from tradeguard_trading_hours.rule import TradingHoursRule

__all__ = ["TradingHoursRule", "register_risk_rules"]


@hookimpl
def register_risk_rules(register):
    """Register the ``trading_hours`` rule (disabled for every account until enabled)."""
    register("trading_hours", TradingHoursRule())
