"""Paper exchange adapter (to be completed by the order-path work)."""

from __future__ import annotations

from tradeguard.types import SettingSpec

SETTINGS = (
    SettingSpec("starting_balance", str, default="10000", help="quote currency the paper account starts with"),
)


class PaperExchange:
    name = "paper"
    testnet = True
    capabilities = frozenset()

    def __init__(self, config):
        self.config = config
