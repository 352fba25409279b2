"""The standard risk rules (built-in plugin)."""

from __future__ import annotations

from tradeguard.hookspecs import hookimpl


@hookimpl
def register_risk_rules(register):
    """Registered by the order-path work."""
