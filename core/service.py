"""Base for the Engine's services: every public method runs against the
Engine's own database (see `tradeguard.storage.use_database`)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from tradeguard.storage import current_database, use_database

if TYPE_CHECKING:
    from tradeguard.engine import Engine

F = TypeVar("F", bound=Callable[..., Any])


def in_engine_db(method: F) -> F:
    """Decorator for methods of objects with an ``engine`` (or of the Engine itself)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        engine = getattr(self, "engine", self)
        engine._check_open()
        if current_database() is engine.db:  # a nested call: already pointed at this Engine's database
            return method(self, *args, **kwargs)
        with use_database(engine.db):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Service:
    """A part of the Engine's API (accounts, orders, backups …)."""

    def __init__(self, engine: "Engine"):
        self.engine = engine

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
