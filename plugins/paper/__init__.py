"""The paper exchange: a simulated venue, the embedded default."""

from __future__ import annotations

from tradeguard.hookspecs import hookimpl


@hookimpl
def register_exchanges(register):
    from tradeguard.plugins.paper.exchange import PaperExchange, SETTINGS

    register("paper", PaperExchange, settings=SETTINGS, paper=True)
