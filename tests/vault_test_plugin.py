"""A venue plugin for the vault tests: declares secret settings, records what
its adapter was given, and authenticates ``fetch_balance`` against a known key."""

from __future__ import annotations

from decimal import Decimal

from tradeguard import CredentialsError, SettingSpec, hookimpl
from tradeguard.types import Balance

GOOD_KEY = "GOODKEY-0123456789abcdef"
built: list = []  # every AdapterConfig the factory received


class VaultVenue:
    name = "vaultvenue"
    testnet = True
    capabilities = frozenset()

    def __init__(self, config):
        self.config = config
        built.append(config)

    def fetch_balance(self):
        if self.config.secrets.require("api_key") != GOOD_KEY:
            raise CredentialsError("vaultvenue: invalid API key")
        return {"USDT": Balance("USDT", Decimal(1), Decimal(0), Decimal(1))}

    def close(self):
        pass


@hookimpl
def register_exchanges(register):
    register("vaultvenue", VaultVenue, settings=[SettingSpec("api_key", secret=True), SettingSpec("api_secret", secret=True),
                                                  SettingSpec("trading_pin", secret=True), SettingSpec("region", default="eu")])
