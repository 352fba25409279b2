"""Persistent state of the paper venue, one JSON document per book in the
``plugin_state`` table, read-modify-written under a row lock so several
processes sharing the database see one consistent book."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from tradeguard.clock import utcnow
from tradeguard.orders.locking import write_transaction
from tradeguard.storage import backend_of, database
from tradeguard.storage.fields import dumps
from tradeguard.storage.models import PluginState

PLUGIN = "paper"


class BookStore:
    """Load and save one book (``plugin_state`` row ``(paper, key)``)."""

    def __init__(self, key: str, initial: Callable[[], dict[str, Any]]):
        self.key = key
        self.initial = initial

    @contextlib.contextmanager
    def book(self) -> Iterator[dict[str, Any]]:
        """The book, locked for the block; changes are saved when the block ends without error."""
        db = database.obj
        with write_transaction(db):
            query = PluginState.select().where((PluginState.plugin == PLUGIN) & (PluginState.key == self.key))
            if backend_of(db) != "sqlite":
                PluginState.insert(plugin=PLUGIN, key=self.key, value=self.initial(), updated_at=utcnow()) \
                    .on_conflict_ignore().execute()
                query = query.for_update()
            row = query.first()
            if row is None:
                row = PluginState.create(plugin=PLUGIN, key=self.key, value=self.initial(), updated_at=utcnow())
            value = row.value
            before = dumps(value)
            yield value
            if dumps(value) != before:  # a read-only pass (nothing filled, price fixed) writes nothing
                PluginState.update(value=value, updated_at=utcnow()).where(PluginState.id == row.id).execute()

    def peek(self) -> dict[str, Any] | None:
        """The stored book without locking (None if it does not exist yet)."""
        row = PluginState.get_or_none((PluginState.plugin == PLUGIN) & (PluginState.key == self.key))
        return None if row is None else row.value
