"""Persistent state of the paper venue, one JSON document per book in the
``plugin_state`` table, read-modify-written under a row lock so several
processes sharing the database see one consistent book.

Speed (the order hot path passes through here two or three times per order):

- a pass that changed nothing (same `fingerprint`) writes nothing;
- the parsed book is kept in memory with the exact text it was read from or
  written as; the next read compares the stored text with it and reuses the
  parsed book instead of decoding it again (another process's write changes
  the text, so it is always seen);
- when the store opens its own transaction (a call from outside any
  transaction, e.g. `create_order` right after the order intent committed),
  that commit is not fsync'd on its own: SQLite relaxes ``synchronous`` to
  NORMAL for it (WAL mode: the commit is made durable by the next FULL commit,
  which syncs the WAL up to and including it), PostgreSQL sets
  ``synchronous_commit`` off for it (the next synchronous commit flushes the
  WAL past it). The fill transaction that follows every venue answer is such
  a durable commit. A power cut between the two loses the venue's side too —
  the order never reached the simulated venue, which reconciliation then
  reports as it would for a real venue — never one side without the other
  being recoverable.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable, Iterator

import peewee

from tradeguard.clock import utcnow
from tradeguard.storage import SQLITE_PRAGMAS, backend_of, database, write_transaction
from tradeguard.storage.fields import _default
from tradeguard.storage.models import PluginState

PLUGIN = "paper"
LIVE = ("OPEN", "PARTIALLY_FILLED")
_SELECT = "SELECT id, value FROM plugin_state WHERE plugin = {0} AND key = {0}"
_UPDATE = "UPDATE plugin_state SET value = {0}, updated_at = {0} WHERE id = {0}"


def encode(book: dict[str, Any]) -> str:
    """The stored text of a book (compact JSON, Decimals as exact strings)."""
    return json.dumps(book, separators=(",", ":"), default=_default, ensure_ascii=False)


_dump = json.JSONEncoder(separators=(",", ":"), default=_default, ensure_ascii=False).encode


class BookEncoder:
    """`encode` of a book, reusing the JSON of closed orders and trades from the last call.

    Closed orders never change again and trades are only appended, so their
    text is kept (per object, holding the object so its id stays unique)
    and only open orders and the small top-level fields are encoded anew:
    the book's size no longer sets the venue's cost per order.
    """

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Any, str]] = {}

    def __call__(self, book: dict[str, Any]) -> str:
        if not isinstance(book.get("orders"), dict) or not isinstance(book.get("trades"), list):
            return encode(book)
        parts, kept = self._parts, {}

        def frozen(obj: Any) -> str:
            entry = parts.get(id(obj))
            if entry is None or entry[0] is not obj:
                entry = (obj, _dump(obj))
            kept[id(obj)] = entry
            return entry[1]

        orders = ",".join(
            f"{_dump(key)}:{frozen(order) if order.get('status') not in LIVE else _dump(order)}"
            for key, order in book["orders"].items())
        trades = ",".join(frozen(trade) for trade in book["trades"])
        rest = ",".join(f"{_dump(k)}:{_dump(v)}" for k, v in book.items() if k not in ("orders", "trades"))
        self._parts = kept
        return f'{{{rest}{"," if rest else ""}"orders":{{{orders}}},"trades":[{trades}]}}'


def fingerprint(book: dict[str, Any]) -> str:
    """Everything in a book that can change without a new order or trade: all but the order and trade
    lists, plus the open orders. Closed orders never change again and trades are only appended or
    pruned (which moves ``next_order`` / ``next_trade``), so equal fingerprints mean an unchanged book."""
    orders = book.get("orders", {})
    live = {k: o for k, o in orders.items() if o.get("status") in LIVE}
    rest = {k: v for k, v in book.items() if k not in ("orders", "trades")}
    return encode({"rest": rest, "live": live, "sizes": [len(orders), len(book.get("trades", ()))]})


@contextlib.contextmanager
def relaxed_transaction(db: peewee.Database) -> Iterator[str]:
    """A write transaction whose own commit is not fsync'd (durable with the next durable commit);
    inside an enclosing transaction, just part of it. Yields SQL to run first in the transaction
    (PostgreSQL's ``SET LOCAL``, sent in the same round trip as the first statement), or ''."""
    if db.in_transaction():
        with write_transaction(db):
            yield ""
        return
    backend = backend_of(db)
    if backend == "sqlite":
        db.execute_sql("PRAGMA synchronous = NORMAL")
        try:
            with write_transaction(db):
                yield ""
        finally:
            db.execute_sql(f"PRAGMA synchronous = {SQLITE_PRAGMAS['synchronous'].upper()}")
        return
    with write_transaction(db):
        yield "SET LOCAL synchronous_commit TO OFF; " if backend == "postgres" else ""


class BookStore:
    """Load and save one book (``plugin_state`` row ``(paper, key)``)."""

    def __init__(self, key: str, initial: Callable[[], dict[str, Any]]):
        self.key = key
        self.initial = initial
        # (database, row id, stored text, parsed book): the last book read or written
        self._cache: tuple[Any, int, str, dict[str, Any]] | None = None
        self._encode = BookEncoder()

    def _row(self, db: peewee.Database, lock: bool, first: str = "") -> tuple[int, str] | None:
        sql = first + _SELECT.format(db.param) + (" FOR UPDATE" if lock else "")
        row = db.execute_sql(sql, (PLUGIN, self.key)).fetchone()
        return None if row is None else (row[0], row[1])

    @contextlib.contextmanager
    def book(self) -> Iterator[dict[str, Any]]:
        """The book, locked for the block; changes are saved when the block ends without error."""
        db = database.obj
        lock = backend_of(db) != "sqlite"  # SQLite: the write transaction already holds the lock
        with relaxed_transaction(db) as first:
            found = self._row(db, lock, first)
            if found is None:
                query = PluginState.insert(plugin=PLUGIN, key=self.key, value=self.initial(), updated_at=utcnow())
                (query.on_conflict_ignore() if lock else query).execute()
                found = self._row(db, lock)
            row_id, text = found
            cache = self._cache
            if cache is not None and cache[0] is db and cache[1] == row_id and cache[2] == text:
                value = cache[3]
            else:
                value = json.loads(text)
            self._cache = None  # the block may change the book and then fail
            before = fingerprint(value)
            yield value
            after = text
            if fingerprint(value) != before:  # a read-only pass (nothing filled, price fixed) writes nothing
                after = self._encode(value)
                updated = PluginState.updated_at.db_value(utcnow())
                db.execute_sql(_UPDATE.format(db.param), (after, updated, row_id))
            self._cache = (db, row_id, after, value)

    def read(self) -> dict[str, Any] | None:
        """The stored book as last committed, without a transaction or lock (None if there is none).
        Read only: the returned book may be the store's cached copy — never change it."""
        db = database.obj
        found = self._row(db, False)
        if found is None:
            return None
        row_id, text = found
        cache = self._cache
        if cache is not None and cache[0] is db and cache[1] == row_id and cache[2] == text:
            return cache[3]
        value = json.loads(text)
        self._cache = (db, row_id, text, value)
        return value

    def peek(self) -> dict[str, Any] | None:
        """The stored book without locking (None if it does not exist yet)."""
        row = PluginState.get_or_none((PluginState.plugin == PLUGIN) & (PluginState.key == self.key))
        return None if row is None else row.value
