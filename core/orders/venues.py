"""Which venue adapter an account's orders go to.

- A PAPER account on the ``paper`` venue (any venue that registered with
  ``paper=True``) uses that simulated venue.
- A PAPER account on a real venue runs "dry": the real venue supplies markets
  and prices (public endpoints), a private `PaperExchange` book simulates the
  fills. Nothing is ever sent to the real venue for a PAPER account.
- A LIVE account uses its venue's adapter.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tradeguard.storage.models import Account
from tradeguard.types import TradingMode

log = logging.getLogger("tradeguard.orders")


class Venues:
    """Builds and caches the adapters the order path talks to."""

    def __init__(self, engine: Any):
        self.engine = engine
        self._lock = threading.Lock()
        self._dry: dict[str, Any] = {}
        self._initialized: set[str] = set()

    def registration(self, account: Account) -> Any:
        return self.engine.plugins.exchanges.get(account.exchange)

    def is_simulated(self, account: Account) -> bool:
        return bool(self.registration(account).meta.get("paper"))

    def _raw(self, account: Account) -> Any:
        """The account's own adapter, built and cached by `Engine.exchange_for`."""
        return self.engine.exchange_for(account.name)

    def for_account(self, account: Account) -> Any:
        """The adapter that receives *account*'s orders (simulated for PAPER accounts)."""
        if account.mode is TradingMode.PAPER and not self.is_simulated(account):
            return self._dry_run(account)
        adapter = self._raw(account)
        if account.name not in self._initialized:
            initialize = getattr(adapter, "initialize", None)
            if initialize is not None and account.initial_capital > 0:
                initialize({account.quote_currency: account.initial_capital})
            self._initialized.add(account.name)
        return adapter

    def _dry_run(self, account: Account) -> Any:
        from tradeguard.adapters import AdapterConfig
        from tradeguard.plugins.paper.exchange import PaperExchange
        from tradeguard.plugins.paper.feeds import VenueFeed

        with self._lock:
            adapter = self._dry.get(account.name)
            if adapter is None:
                real = self._raw(account)
                config = AdapterConfig(account=account.name, venue="paper", testnet=True,
                                       settings={"state_key": f"dry:{account.name}"})
                adapter = PaperExchange(config, feed=VenueFeed(real), markets_from=real)
                self._dry[account.name] = adapter
        if account.name not in self._initialized and account.initial_capital > 0:
            adapter.initialize({account.quote_currency: account.initial_capital})
            self._initialized.add(account.name)
        return adapter

    def close(self) -> None:
        for adapter in self._dry.values():
            try:
                adapter.close()
            except Exception:
                log.exception("closing a dry-run adapter failed")
        self._dry.clear()
