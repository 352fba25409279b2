"""Persistent state of the paper venue in the ``plugin_state`` table.

Two kinds of rows per book (``plugin`` = ``paper``):

- the **book row** (``key`` = the book's key): a small JSON document with
  only what changes — balances, the nonce and the order/trade counters,
  fixed prices, the feed's state, the *live* orders (OPEN or
  PARTIALLY_FILLED, each with its fills) and ``archived`` (how many orders
  were archived, to pace the pruning). It is read-modify-written under a
  row lock, so several processes sharing the database see one consistent
  book;
- two **archive rows** per closed order: ``"<book key>/order/<exchange order
  id>"`` holds the order with its ``fills``, ``"<book key>/client/<client
  order id>"`` its exchange order id (client-id lookups and duplicate
  detection are point queries). When a `BookStore.book` block ends, every
  order of ``book["orders"]`` that is no longer live is inserted there, in
  the same transaction as the book update; the rows never change again.
  Every `PRUNE_EVERY` archived orders, the archive rows older than the
  newest `KEEP_ARCHIVED_ORDERS` orders are deleted.

A book stored in the old shape (closed orders inside ``orders``, a
``trades`` list) is converted when a block first loads it: its closed
orders are archived, ``trades`` goes.

Speed (the order hot path passes through here two or three times per order):

- the book row stays small whatever the number of orders placed: the cost
  of an order does not grow with the history kept; an order that closes
  costs one small INSERT (and every `PRUNE_EVERY` orders, one SELECT and
  one DELETE);
- a pass that changed nothing (the book encodes to the text it was read
  from) writes nothing;
- the parsed book is kept in memory with the exact text it was read from or
  written as; the next read compares the stored text with it and reuses the
  parsed book instead of decoding it again (another process's write changes
  the text, so it is always seen);
- archive rows never change, so once parsed they are kept in memory by row
  id: repeated `fetch_my_trades` / lookups do not parse them again;
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
  being recoverable (the archive rows are part of the same transaction).
"""

from __future__ import annotations

import contextlib
import functools
import json
from typing import Any, Callable, Iterator

import peewee

from tradeguard.clock import utcnow
from tradeguard.storage import SQLITE_PRAGMAS, backend_of, database, write_transaction
from tradeguard.storage.fields import _default
from tradeguard.storage.models import PluginState

PLUGIN = "paper"
LIVE = ("OPEN", "PARTIALLY_FILLED")
#: Archived (closed) orders kept per book; older archive rows are deleted every `PRUNE_EVERY` archived orders.
KEEP_ARCHIVED_ORDERS = 1000
PRUNE_EVERY = 100
#: Parsed archive rows kept in memory per store (row id -> order).
_PARSED_LIMIT = 2 * KEEP_ARCHIVED_ORDERS

# Pre-built SQL; {p} is the driver's placeholder, {key} the quoted ``key`` column (a reserved word in MySQL),
# {bytewise} a collation comparing bytes where the database's default may not (PostgreSQL under a linguistic
# collation such as glibc's en_US may ignore the '/' of a key prefix), so a prefix is a key range.
_SELECT = "SELECT id, value FROM plugin_state WHERE plugin = {p} AND {key} = {p}"
_UPDATE = "UPDATE plugin_state SET value = {p}, updated_at = {p} WHERE id = {p}"
_INSERT = "INSERT INTO plugin_state (plugin, {key}, value, updated_at) VALUES "
_INSERT_ROW = "({p}, {p}, {p}, {p})"
_RANGE = "plugin = {p} AND {key}{bytewise} >= {p} AND {key}{bytewise} < {p}"
_NEWEST = "SELECT id, {key} FROM plugin_state WHERE " + _RANGE + " ORDER BY id DESC LIMIT {p} OFFSET {p}"
_ROWS = "SELECT id, {key}, value FROM plugin_state WHERE id IN ({ids})"
_NTH = "SELECT id FROM plugin_state WHERE " + _RANGE + " ORDER BY id DESC LIMIT 1 OFFSET {p}"
_DELETE = "DELETE FROM plugin_state WHERE (" + _RANGE + " OR " + _RANGE + ") AND id < {p}"


@functools.lru_cache(maxsize=64)
def _sql(template: str, backend: str, param: str, quote: str, count: int = 0) -> str:
    return template.format(p=param, key=f"{quote[0]}key{quote[-1]}", ids=", ".join([param] * count),
                           bytewise=' COLLATE "C"' if backend == "postgres" else "")


def sql(db: peewee.Database, template: str, count: int = 0) -> str:
    """*template* for *db*'s driver (placeholders, quoting); *count*: the number of ``{ids}`` placeholders."""
    return _sql(template, backend_of(db), db.param, db.quote, count)


def encode(value: Any) -> str:
    """The stored text of a book or an archived order (compact JSON, Decimals as exact strings)."""
    return json.dumps(value, separators=(",", ":"), default=_default, ensure_ascii=False)


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


def upgrade(book: dict[str, Any]) -> dict[str, Any]:
    """Bring a loaded book to the current shape (in place): the old shape's ``trades`` list goes (the
    trades are in their orders' ``fills``); its closed orders are archived when the block ends."""
    book.pop("trades", None)
    book.pop("recent", None)  # a client-id map kept in the book row during development: the rows replace it
    book.setdefault("archived", 0)
    return book


class BookStore:
    """Load and save one book (``plugin_state`` row ``(paper, key)``) and its archived orders."""

    def __init__(self, key: str, initial: Callable[[], dict[str, Any]]):
        self.key = key
        self.initial = initial
        # (database, row id, stored text, parsed book): the last book read or written
        self._cache: tuple[Any, int, str, dict[str, Any]] | None = None
        # archive rows already parsed: row id -> (key, order), valid for database `_parsed_db`
        self._parsed: dict[int, tuple[str, dict[str, Any]]] = {}
        self._parsed_db: Any = None

    @property
    def prefix(self) -> str:
        """The key prefix of this book's archive rows."""
        return f"{self.key}/order/"

    @property
    def client_prefix(self) -> str:
        """The key prefix of this book's client-id rows."""
        return f"{self.key}/client/"

    def archive_key(self, exchange_order_id: str) -> str:
        return f"{self.prefix}{exchange_order_id}"

    def _range(self, prefix: str | None = None) -> tuple[str, str, str]:
        prefix = prefix or self.prefix
        return PLUGIN, prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)  # every key starting with the prefix

    def _row(self, db: peewee.Database, lock: bool, first: str = "") -> tuple[int, str] | None:
        statement = first + sql(db, _SELECT) + (" FOR UPDATE" if lock else "")
        row = db.execute_sql(statement, (PLUGIN, self.key)).fetchone()
        return None if row is None else (row[0], row[1])

    @contextlib.contextmanager
    def book(self) -> Iterator[dict[str, Any]]:
        """The book, locked for the block; changes are saved when the block ends without error, and the
        orders of ``book["orders"]`` that are no longer live move to the archive."""
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
            upgrade(value)
            yield value
            closed = [order for order in value["orders"].values() if order.get("status") not in LIVE]
            if closed:
                self._archive(db, value, closed)
            after = encode(value)
            if after != text:  # a read-only pass (nothing filled, price fixed) writes nothing
                updated = PluginState.updated_at.db_value(utcnow())
                db.execute_sql(sql(db, _UPDATE), (after, updated, row_id))
            self._cache = (db, row_id, after, value)

    def _archive(self, db: peewee.Database, book: dict[str, Any], closed: list[dict[str, Any]]) -> None:
        """Move *closed* orders out of *book* into archive rows, with their client-id rows (one INSERT)."""
        orders = book["orders"]
        updated = PluginState.updated_at.db_value(utcnow())
        params: list[Any] = []
        for order in sorted(closed, key=lambda o: o["seq"]):
            del orders[order["id"]]
            params += (PLUGIN, self.archive_key(order["id"]), encode(order), updated,
                       PLUGIN, f"{self.client_prefix}{order['client_order_id']}", encode(order["id"]), updated)
        db.execute_sql(sql(db, _INSERT) + ", ".join([sql(db, _INSERT_ROW)] * (2 * len(closed))), params)
        before = book["archived"]
        book["archived"] = before + len(closed)
        if before // PRUNE_EVERY != book["archived"] // PRUNE_EVERY:
            self._prune(db)

    def _prune(self, db: peewee.Database) -> None:
        """Delete this book's archive rows older than the newest `KEEP_ARCHIVED_ORDERS`."""
        bounds = self._range()
        row = db.execute_sql(sql(db, _NTH), (*bounds, KEEP_ARCHIVED_ORDERS - 1)).fetchone()
        if row is not None:
            db.execute_sql(sql(db, _DELETE), (*bounds, *self._range(self.client_prefix), row[0]))

    def closed_order_id(self, client_order_id: str) -> str | None:
        """The exchange order id of the archived order with *client_order_id* (None if none or pruned)."""
        db = database.obj
        row = db.execute_sql(sql(db, _SELECT), (PLUGIN, f"{self.client_prefix}{client_order_id}")).fetchone()
        return None if row is None else json.loads(row[1])

    def _parsed_rows(self, db: peewee.Database) -> dict[int, tuple[str, dict[str, Any]]]:
        if self._parsed_db is not db:
            self._parsed, self._parsed_db = {}, db
        elif len(self._parsed) > _PARSED_LIMIT:
            for row_id in sorted(self._parsed)[: len(self._parsed) - _PARSED_LIMIT // 2]:
                del self._parsed[row_id]  # the oldest rows: the least likely to be asked for again
        return self._parsed

    def archived(self, exchange_order_id: str) -> dict[str, Any] | None:
        """The archived order *exchange_order_id* (None if not archived or pruned). Never change it."""
        db = database.obj
        key = self.archive_key(exchange_order_id)
        row = db.execute_sql(sql(db, _SELECT), (PLUGIN, key)).fetchone()
        if row is None:
            return None
        parsed = self._parsed_rows(db)
        entry = parsed.get(row[0])
        if entry is None or entry[0] != key:
            entry = parsed[row[0]] = (key, json.loads(row[1]))
        return entry[1]

    def newest_archived(self, trades: int) -> list[dict[str, Any]]:
        """The newest archived orders (newest first), enough of them to hold *trades* fills (or all).
        Never change them."""
        db = database.obj
        parsed = self._parsed_rows(db)
        bounds, prefix = self._range(), self.prefix
        page = max(trades, 1)
        out: list[dict[str, Any]] = []
        count = offset = 0
        while count < trades:
            rows = db.execute_sql(sql(db, _NEWEST), (*bounds, page, offset)).fetchall()
            mine = [(row_id, key) for row_id, key in rows if key.startswith(prefix)]
            missing = [row_id for row_id, key in mine if parsed.get(row_id, ("",))[0] != key]
            if missing:
                for row_id, key, text in db.execute_sql(sql(db, _ROWS, len(missing)), missing).fetchall():
                    parsed[row_id] = (key, json.loads(text))
            for row_id, key in mine:
                entry = parsed.get(row_id)
                if entry is None:  # pruned meanwhile
                    continue
                out.append(entry[1])
                count += len(entry[1].get("fills") or ())
                if count >= trades:
                    break
            if len(rows) < page:
                break
            offset += page
        return out

    def read(self) -> dict[str, Any] | None:
        """The stored book as last committed, without a transaction or lock (None if there is none).
        Read only: the returned book may be the store's cached copy — never change it. It may still be
        in the old shape (closed orders in ``orders``) until a `book` block converts it."""
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
