"""The paper exchange: a simulated venue, the embedded default (see `exchange`)."""

from __future__ import annotations

from tradeguard.hookspecs import hookimpl


@hookimpl
def register_exchanges(register):
    """Register the ``paper`` venue (``paper=True``: orders never leave the process)."""
    from tradeguard.plugins.paper.exchange import SETTINGS, PaperExchange

    register("paper", PaperExchange, settings=SETTINGS, paper=True)
