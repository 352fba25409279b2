"""The shared ccxt adapter behind the built-in Binance and Coinbase plugins.

``CcxtExchange`` implements `tradeguard.protocols.ExchangeAdapter` for any
ccxt venue; a venue plugin subclasses it (see docs/exchanges.md).
"""

from tradeguard.plugins.ccxt_venue.adapter import COMMON_SETTINGS, CcxtExchange, check_endpoint
from tradeguard.plugins.ccxt_venue.errors import VenueRateLimited, translate
from tradeguard.plugins.ccxt_venue.markets import clear_market_cache

__all__ = ["COMMON_SETTINGS", "CcxtExchange", "VenueRateLimited", "check_endpoint", "clear_market_cache", "translate"]
