"""Per-process cache of a venue's markets, shared by every account on that venue.

Loading markets is the most expensive call a ccxt client makes (Binance's
exchangeInfo is megabytes). Accounts on the same venue, network and endpoint
share one copy: the first client loads it, the others receive it with
``client.set_markets`` -- no request. Entries expire after a TTL; an explicit
``reload`` refreshes them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

DEFAULT_TTL = 3600.0


@dataclass
class _Entry:
    markets: dict[str, Any]
    currencies: dict[str, Any] | None
    loaded_at: float


_entries: dict[Hashable, _Entry] = {}
_locks: dict[Hashable, threading.Lock] = {}
_guard = threading.Lock()


def _lock_for(key: Hashable) -> threading.Lock:
    with _guard:
        return _locks.setdefault(key, threading.Lock())


def ensure_markets(client: Any, key: Hashable, *, reload: bool = False, ttl: float = DEFAULT_TTL,
                   loader: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Give *client* the venue's markets, loading them at most once per *ttl* per *key*.

    *loader(client)* performs the real load (default ``client.load_markets(True)``);
    concurrent callers for the same key wait for the first one instead of all loading.
    """
    load = loader or (lambda c: c.load_markets(True))
    with _lock_for(key):
        entry = _entries.get(key)
        fresh = entry is not None and (time.monotonic() - entry.loaded_at) < ttl
        if fresh and not reload:
            if client.markets is not entry.markets and getattr(client, "_tg_markets_key", None) != (key, entry.loaded_at):
                client.set_markets(list(entry.markets.values()), entry.currencies)
                client._tg_markets_key = (key, entry.loaded_at)
            return client.markets
        load(client)
        entry = _Entry(dict(client.markets or {}), dict(client.currencies or {}) or None, time.monotonic())
        _entries[key] = entry
        client._tg_markets_key = (key, entry.loaded_at)
        return client.markets


def clear_market_cache() -> None:
    """Forget every cached market list (tests; a long-running process after a venue listing change)."""
    with _guard:
        _entries.clear()
