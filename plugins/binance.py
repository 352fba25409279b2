"""The built-in Binance plugin (spot by default; USDⓈ-M futures with ``market_type=swap``).

Testnet accounts use https://testnet.binance.vision (ccxt's sandbox mode).
"""

from __future__ import annotations

from typing import Any

from tradeguard.hookspecs import hookimpl
from tradeguard.plugins.ccxt_venue import COMMON_SETTINGS, CcxtExchange
from tradeguard.protocols import CAP_CASH_FLOWS
from tradeguard.types import SettingSpec

SETTINGS = (
    SettingSpec("api_key", str, secret=True, required=True, help="Binance API key"),
    SettingSpec("api_secret", str, secret=True, required=True, help="Binance API secret (HMAC)"),
    *COMMON_SETTINGS,
)


class BinanceExchange(CcxtExchange):
    """Binance through ``ccxt.binance``."""

    ccxt_id = "binance"
    client_order_id_param = "newClientOrderId"
    client_order_id_max_length = 36  # ^[.A-Z:/a-z0-9_-]{1,36}$
    client_id_lookup_param = "origClientOrderId"
    my_trades_needs_symbol = True
    settings = SETTINGS
    ccxt_config = {
        "options": {
            # one exchangeInfo call instead of seven; no sapi calls (the testnet has no sapi)
            "fetchCurrencies": False,
            "fetchMargins": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        }
    }

    def _client_config(self) -> dict[str, Any]:
        config = super()._client_config()
        types = ["spot"] if self.market_type == "spot" else ["linear"]
        config["options"] = {**config.get("options", {}), "fetchMarkets": {"types": types}}
        return config

    def _capabilities(self) -> frozenset[str]:
        caps = super()._capabilities()
        if self.testnet:  # deposit/withdrawal history lives on sapi, which the testnet lacks
            caps = caps - {CAP_CASH_FLOWS}
        return caps


@hookimpl
def register_exchanges(register):
    """Register ``binance``."""
    register("binance", BinanceExchange, settings=SETTINGS, ccxt_id="binance", sandbox=True)
