"""The built-in Coinbase plugins.

- ``coinbase``: Coinbase Advanced Trade (ccxt ``coinbase``), CDP API keys
  (key name ``organizations/…/apiKeys/…`` and its EC private key). It has **no
  sandbox**: a testnet account is refused with a clear error unless it points
  at a test server with ``api_base_url``; real trading needs ``--mainnet``.
- ``coinbaseexchange``: the Coinbase Exchange API (ccxt ``coinbaseexchange``,
  key + secret + passphrase), whose sandbox
  (api-public.sandbox.exchange.coinbase.com) testnet accounts use.
"""

from __future__ import annotations

from decimal import Decimal

from tradeguard.hookspecs import hookimpl
from tradeguard.plugins.ccxt_venue import COMMON_SETTINGS, CcxtExchange
from tradeguard.types import OrderRequest, OrderType, SettingSpec, Side

SETTINGS = (
    SettingSpec("api_key", str, secret=True, required=True, help="CDP API key name: organizations/<org>/apiKeys/<id>"),
    SettingSpec("api_secret", str, secret=True, required=True, help="CDP API private key (PEM, EC P-256)"),
    *COMMON_SETTINGS,
)

EXCHANGE_SETTINGS = (
    SettingSpec("api_key", str, secret=True, required=True, help="Coinbase Exchange API key"),
    SettingSpec("api_secret", str, secret=True, required=True, help="Coinbase Exchange API secret (base64)"),
    SettingSpec("passphrase", str, secret=True, required=True, help="Coinbase Exchange API passphrase"),
    *COMMON_SETTINGS,
)


class CoinbaseExchange(CcxtExchange):
    """Coinbase Advanced Trade through ``ccxt.coinbase``."""

    ccxt_id = "coinbase"
    # ccxt drops the unified clientOrderId: only the raw parameter reaches the venue
    client_order_id_param = "client_order_id"
    client_order_id_max_length = 128
    client_id_lookup_param = None  # no lookup by client id: scan open and recent orders
    sandbox_supported = False  # ccxt 4.5: set_sandbox_mode(True) raises a bare TypeError
    sandbox_hint = "Coinbase Advanced Trade has no sandbox (exchange 'coinbaseexchange' has one); "
    balance_params = {"v3": True}  # Advanced Trade accounts: available + hold
    settings = SETTINGS
    ccxt_config = {"has": {"fetchCurrencies": False}}  # 3 fewer calls per load_markets

    def _price_for(self, request: OrderRequest) -> Decimal | None:
        """A market buy is sent as a quote amount: quantity x price (the order's, else the ask)."""
        if request.type is OrderType.MARKET and request.side is Side.BUY:
            if request.price is not None:
                return request.price
            ticker = self.fetch_ticker(request.symbol)
            return ticker.ask or ticker.last
        return super()._price_for(request)


class CoinbaseExchangeApi(CcxtExchange):
    """The Coinbase Exchange API (with a sandbox) through ``ccxt.coinbaseexchange``."""

    ccxt_id = "coinbaseexchange"
    client_order_id_param = "client_oid"  # must be a UUID
    client_order_id_max_length = 36
    client_id_lookup_param = "clientOrderId"
    secret_fields = {"api_key": "apiKey", "api_secret": "secret", "passphrase": "password"}
    settings = EXCHANGE_SETTINGS


@hookimpl
def register_exchanges(register):
    """Register ``coinbase`` (Advanced Trade) and ``coinbaseexchange``."""
    register("coinbase", CoinbaseExchange, settings=SETTINGS, ccxt_id="coinbase", sandbox=False)
    register("coinbaseexchange", CoinbaseExchangeApi, settings=EXCHANGE_SETTINGS, ccxt_id="coinbaseexchange", sandbox=True)
