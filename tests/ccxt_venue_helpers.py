"""Helpers for the ccxt adapter and sync tests: adapters on the replay transport.

The adapters under test are tradeguard's own (`BinanceExchange`,
`CoinbaseExchange`) around the real ccxt classes; only ``client.fetch`` is
replaced by `ccxt_replay.ReplayTransport`.
"""

from __future__ import annotations

from typing import Any

import ccxt_replay as cr

from tradeguard.adapters import AdapterConfig
from tradeguard.plugins.binance import BinanceExchange
from tradeguard.plugins.coinbase import CoinbaseExchange

BINANCE_SECRETS = {"api_key": "test-binance-api-key", "api_secret": "test-binance-secret"}


def coinbase_secrets() -> dict[str, str]:
    creds = cr.coinbase_test_credentials()
    return {"api_key": creds["apiKey"], "api_secret": creds["secret"]}


def config(venue: str, *, account: str = "main", testnet: bool = False, api_base_url: str | None = None,
           secrets: dict[str, str] | None = None, **settings: Any) -> AdapterConfig:
    """An AdapterConfig as the Engine builds it (rate limiter off: the replay has no clock)."""
    settings.setdefault("rate_limit", False)
    if secrets is None:
        secrets = BINANCE_SECRETS if venue == "binance" else coinbase_secrets()
    return AdapterConfig(account=account, venue=venue, testnet=testnet, api_base_url=api_base_url,
                         settings=settings, secrets=secrets)


def binance(transport: cr.ReplayTransport | None = None, *, sleeps: list | None = None, **kwargs: Any):
    """(adapter, transport): a mainnet Binance adapter on recorded responses."""
    transport = transport or cr.ReplayTransport.for_venue("binance")
    adapter = BinanceExchange(config("binance", **kwargs), sleep=(sleeps.append if sleeps is not None else _no_sleep))
    transport.install(adapter.client)
    return adapter, transport


def coinbase(transport: cr.ReplayTransport | None = None, *, sleeps: list | None = None, **kwargs: Any):
    """(adapter, transport): a mainnet Coinbase Advanced Trade adapter on recorded responses."""
    transport = transport or cr.ReplayTransport.for_venue("coinbase")
    adapter = CoinbaseExchange(config("coinbase", **kwargs), sleep=(sleeps.append if sleeps is not None else _no_sleep))
    transport.install(adapter.client)
    return adapter, transport


def install(engine: Any, account: str, venue: str) -> cr.ReplayTransport:
    """Put the replay transport under the adapter *engine* built for *account* (rate limiter off)."""
    adapter = engine.exchange_for(account)
    adapter._sleep = _no_sleep
    adapter.client.enableRateLimit = False
    transport = cr.ReplayTransport.for_venue(venue)
    if venue == "binance":  # no deposits or withdrawals unless a test adds some
        transport.add("GET", r"^/sapi/v1/capital/deposit/hisrec$", body=[])
        transport.add("GET", r"^/sapi/v1/capital/withdraw/history$", body=[])
    transport.install(adapter.client)
    return transport


def _no_sleep(seconds: float) -> None:
    return None
