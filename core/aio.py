"""A thin asyncio facade over `Engine`: every call runs in a worker thread.

::

    from tradeguard.aio import AsyncEngine

    async with await AsyncEngine.open("sqlite:///bot.db") as engine:
        await engine.accounts.add("main", "paper")
        accounts = await engine.accounts.list()

The Engine is thread-safe (each thread gets its own database connection), so
calls from several tasks may run at once; none blocks the event loop. Methods
of the Engine and of its services (``engine.accounts``, ``engine.orders`` …)
become coroutines; other attributes (``engine.plugins``, ``engine.settings``)
are returned as they are. The wrapped Engine is `AsyncEngine.sync`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable

from tradeguard.service import Service


def _to_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)

    return call


class _AsyncService:
    """A service whose public methods are coroutines run in a worker thread."""

    def __init__(self, service: Any):
        self._service = service

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._service, name)
        if not name.startswith("_") and inspect.ismethod(value):
            return _to_thread(value)
        return value

    def __repr__(self) -> str:
        return f"<async {self._service!r}>"


class AsyncEngine:
    """`Engine` for asyncio code: ``await engine.place_order(...)`` etc."""

    def __init__(self, engine: Any):
        self.sync = engine

    @classmethod
    async def open(cls, url: str | None = None, **kwargs: Any) -> "AsyncEngine":
        """Open an Engine (same arguments as `Engine.open`) in a worker thread."""
        from tradeguard.engine import Engine

        return cls(await asyncio.to_thread(Engine.open, url, **kwargs))

    async def close(self) -> None:
        """Close the Engine (adapters and database) in a worker thread."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> "AsyncEngine":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.sync, name)
        if name.startswith("_"):
            return value
        if isinstance(value, Service) or getattr(value, "engine", None) is self.sync:
            return _AsyncService(value)  # a service of this Engine (accounts, orders, risk …)
        if inspect.ismethod(value):
            return _to_thread(value)
        return value

    def __repr__(self) -> str:
        return f"<AsyncEngine {self.sync!r}>"
