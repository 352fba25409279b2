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
  one DELETE). On SQLite and PostgreSQL, when a block closes one order
  (an order filling on arrival), its two archive rows and the book row's
  update are one statement (``INSERT … ON CONFLICT (plugin, key) DO
  UPDATE``: the archive keys are new, the book's key exists);
- `create_order` opens its block with ``book(client_order_id)``: on SQLite,
  whose write transaction holds the lock from BEGIN, the client-id row comes
  with the book row in one SELECT; on PostgreSQL it is read after the row
  lock (a statement that waited for the lock would not see the rows the
  other transaction committed);
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

import functools
import json
import operator
import sys
from typing import Any, Callable

import peewee

try:
    import _json as _json_c
except ImportError:  # pragma: no cover - CPython always has it
    _json_c = None  # type: ignore[assignment]

from tradeguard.clock import isoformat, utcnow
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
_seq = operator.itemgetter("seq")

# Pre-built SQL; {p} is the driver's placeholder, {key} the quoted ``key`` column (a reserved word in MySQL),
# {bytewise} a collation comparing bytes where the database's default may not (PostgreSQL under a linguistic
# collation such as glibc's en_US may ignore the '/' of a key prefix), so a prefix is a key range.
_SELECT = "SELECT id, value FROM plugin_state WHERE plugin = {p} AND {key} = {p}"
_SELECT_TWO = "SELECT id, {key}, value FROM plugin_state WHERE plugin = {p} AND {key} IN ({p}, {p})"
_UPDATE = "UPDATE plugin_state SET value = {p}, updated_at = {p} WHERE id = {p}"
_INSERT = "INSERT INTO plugin_state (plugin, {key}, value, updated_at) VALUES "
_INSERT_ROW = "({p}, {p}, {p}, {p})"
# SQLite and PostgreSQL: a closed order's two archive rows and the book row's update in one statement
_UPSERT = (_INSERT + ", ".join([_INSERT_ROW] * 3)
           + " ON CONFLICT (plugin, {key}) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
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


_encode_string = json.encoder.encode_basestring  # json.dumps(str, ensure_ascii=False)
_DUMPS = json.JSONEncoder(separators=(",", ":"), default=_default, ensure_ascii=False).encode
# The C encoder json.dumps builds on every call, built once (no circular-reference check: books are trees).
_ENCODER = (_json_c.make_encoder(None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
            if _json_c is not None else None)


def encode(value: Any) -> str:
    """The stored text of a book or an archived order (compact JSON, Decimals as exact strings)."""
    if _ENCODER is None or type(value) is not dict:
        return _DUMPS(value)
    return "".join(_ENCODER(value, 0))


#: Sets SQLite's ``synchronous`` back to the configured level after a relaxed commit.
_RESTORE_SYNCHRONOUS = f"PRAGMA synchronous = {SQLITE_PRAGMAS['synchronous'].upper()}"


class relaxed_transaction:
    """A write transaction whose own commit is not fsync'd (durable with the next durable commit);
    inside an enclosing transaction, just part of it. Entering it gives SQL to run first in the
    transaction (PostgreSQL's ``SET LOCAL``, sent in the same round trip as the first statement), or ''.

    SQLite: ``synchronous`` is NORMAL for the commit and set back to the configured level (FULL) right
    after it, whatever the outcome. A class rather than nested generator context managers: `BookStore.book`
    enters it on the order hot path."""

    __slots__ = ("db", "backend", "tx", "restore")

    def __init__(self, db: peewee.Database, backend: str | None = None):
        self.db = db
        self.backend = backend or backend_of(db)
        self.restore = ""

    def __enter__(self) -> str:
        db = self.db
        if db.in_transaction():
            self.tx = write_transaction(db)
            self.tx.__enter__()
            return ""
        if self.backend == "sqlite":
            restore = _RESTORE_SYNCHRONOUS
            db.execute_sql("PRAGMA synchronous = NORMAL")
            try:
                # what write_transaction opens outside a transaction (BEGIN IMMEDIATE), without its layers
                tx = db.transaction(lock_type="IMMEDIATE")
                tx.__enter__()
            except BaseException:
                db.execute_sql(restore)
                raise
            self.tx, self.restore = tx, restore
            return ""
        self.tx = write_transaction(self.db)
        self.tx.__enter__()
        return "SET LOCAL synchronous_commit TO OFF; " if self.backend == "postgres" else ""

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.tx.__exit__(exc_type, exc, tb)
        finally:
            if self.restore:
                self.db.execute_sql(self.restore)


def upgrade(book: dict[str, Any]) -> dict[str, Any]:
    """Bring a loaded book to the current shape (in place): the old shape's ``trades`` list goes (the
    trades are in their orders' ``fills``); its closed orders are archived when the block ends."""
    book.pop("trades", None)
    book.pop("recent", None)  # a client-id map kept in the book row during development: the rows replace it
    book.setdefault("archived", 0)
    return book


class _Statements:
    """The store's SQL for one database (built once per database)."""

    __slots__ = ("db", "backend", "lock", "select", "select_lock", "select_two", "update", "upsert", "stamp")

    def __init__(self, db: peewee.Database):
        self.db = db
        self.backend = backend_of(db)
        self.lock = self.backend != "sqlite"  # SQLite: the write transaction already holds the lock
        self.select = sql(db, _SELECT)
        self.select_lock = self.select + (" FOR UPDATE" if self.lock else "")
        self.select_two = sql(db, _SELECT_TWO)
        self.update = sql(db, _UPDATE)
        self.upsert = sql(db, _UPSERT) if self.backend in ("sqlite", "postgres") else None
        # ``updated_at`` as the column stores it: on SQLite the clock's ISO text (checked against the field)
        probe = utcnow()
        field = PluginState.updated_at
        self.stamp = (isoformat if self.backend == "sqlite" and field.db_value(probe) == isoformat(probe)
                      else field.db_value)



class _Block:
    """`BookStore.book`'s context manager (a class: the order hot path enters one per order)."""

    __slots__ = ("store", "client_order_id", "db", "statements", "tx", "row_id", "text", "value", "prefetched")

    def __init__(self, store: "BookStore", client_order_id: str | None):
        self.store = store
        self.client_order_id = client_order_id
        self.prefetched: tuple[str, str | None] | None = None

    def __enter__(self) -> dict[str, Any]:
        store = self.store
        db = database.obj
        statements = store._statements
        if statements is None or statements.db is not db:
            statements = store._statements_for(db)
        self.db, self.statements = db, statements
        tx = self.tx = relaxed_transaction(db, statements.backend)
        first = tx.__enter__()
        try:
            found = self._load(db, statements, first)
            if found is None:
                query = PluginState.insert(plugin=PLUGIN, key=store.key, value=store.initial(), updated_at=utcnow())
                (query.on_conflict_ignore() if statements.lock else query).execute()
                found = store._row(db, statements.lock)
            row_id, text = found
            cache = store._cache
            if cache is not None and cache[0] is db and cache[1] == row_id and cache[2] == text:
                value = cache[3]
            else:
                value = json.loads(text)
            if "archived" not in value or "trades" in value or "recent" in value:
                upgrade(value)
            store._cache = None  # the block may change the book and then fail
        except BaseException:
            tx.__exit__(*sys.exc_info())
            raise
        self.row_id, self.text, self.value = row_id, text, value
        return value

    def _load(self, db: peewee.Database, statements: _Statements, first: str) -> tuple[int, str] | None:
        """The book row; on SQLite (the write lock is held from BEGIN) the client-id row of
        *client_order_id* in the same statement. Elsewhere that row is read after the book row's lock
        (a statement that waited for the lock would not see rows committed meanwhile)."""
        store, client = self.store, self.client_order_id
        if client is None or statements.lock:
            row = db.execute_sql(first + statements.select_lock, (PLUGIN, store.key)).fetchone()
            return None if row is None else (row[0], row[1])
        client_key = f"{store.key}/client/{client}"
        found = None
        closed = None
        for row_id, key, text in db.execute_sql(statements.select_two, (PLUGIN, store.key, client_key)).fetchall():
            if key == client_key:
                closed = json.loads(text)
            else:
                found = (row_id, text)
        self.prefetched = (client, closed)
        return found

    def closed_order_id(self, client_order_id: str) -> str | None:
        """`BookStore.closed_order_id`, answered from the rows this block read if it read that one."""
        prefetched = self.prefetched
        if prefetched is not None and prefetched[0] == client_order_id:
            return prefetched[1]
        return self.store.closed_order_id(client_order_id)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        tx = self.tx
        if exc_type is not None:
            tx.__exit__(exc_type, exc, tb)
            return
        try:
            after = self._save()
        except BaseException:
            tx.__exit__(*sys.exc_info())
            raise
        tx.__exit__(None, None, None)
        self.store._cache = (self.db, self.row_id, after, self.value)

    def _save(self) -> str:
        """Archive the orders no longer live, write the book if it changed; the book's new text."""
        db, statements, value, store = self.db, self.statements, self.value, self.store
        orders = value["orders"]
        closed = [order for order in orders.values() if order["status"] not in LIVE] if orders else None
        if not closed:
            after = "".join(_ENCODER(value, 0)) if _ENCODER is not None else encode(value)
            if after != self.text:  # a read-only pass (nothing filled, price fixed) writes nothing
                db.execute_sql(statements.update, (after, statements.stamp(utcnow()), self.row_id))
            return after
        updated = statements.stamp(utcnow())
        if closed[1:] or statements.upsert is None:  # several orders closed, or no upsert (MySQL)
            store._archive(db, value, closed, updated)
            after = encode(value)
            db.execute_sql(statements.update, (after, updated, self.row_id))
            return after
        # one order closed (an order that filled on arrival): its rows and the book's in one statement
        [order] = closed
        order_id, key = order["id"], store.key
        del orders[order_id]
        archived = value["archived"]
        value["archived"] = archived + 1
        if _ENCODER is not None:  # encode(), inlined
            after, text = "".join(_ENCODER(value, 0)), "".join(_ENCODER(order, 0))
        else:
            after, text = encode(value), encode(order)
        db.execute_sql(statements.upsert, (
            PLUGIN, f"{key}/order/{order_id}", text, updated,
            PLUGIN, f"{key}/client/{order['client_order_id']}", _encode_string(order_id), updated,
            PLUGIN, key, after, updated))
        if archived // PRUNE_EVERY != (archived + 1) // PRUNE_EVERY:
            store._prune(db)
        return after


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
        self._statements: _Statements | None = None

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

    def _statements_for(self, db: peewee.Database) -> _Statements:
        statements = self._statements
        if statements is None or statements.db is not db:
            statements = self._statements = _Statements(db)
        return statements

    def _row(self, db: peewee.Database, lock: bool, first: str = "") -> tuple[int, str] | None:
        statements = self._statements_for(db)
        statement = first + (statements.select_lock if lock and statements.lock else statements.select)
        row = db.execute_sql(statement, (PLUGIN, self.key)).fetchone()
        return None if row is None else (row[0], row[1])

    def book(self, client_order_id: str | None = None) -> _Block:
        """The book, locked for the block (``with store.book() as book:``); changes are saved when the
        block ends without error, and the orders of ``book["orders"]`` that are no longer live move to
        the archive. *client_order_id*: the block's `closed_order_id` is asked about it (on SQLite the
        row comes with the book's)."""
        return _Block(self, client_order_id)

    def _archive(self, db: peewee.Database, book: dict[str, Any], closed: list[dict[str, Any]], updated: Any) -> None:
        """Move *closed* orders out of *book* into archive rows, with their client-id rows (one INSERT);
        *updated*: their ``updated_at``."""
        orders = book["orders"]
        params: list[Any] = []
        key = self.key
        for order in sorted(closed, key=_seq):
            order_id = order["id"]
            del orders[order_id]
            params += (PLUGIN, f"{key}/order/{order_id}", encode(order), updated,
                       PLUGIN, f"{key}/client/{order['client_order_id']}", _encode_string(order_id), updated)
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
        row = db.execute_sql(self._statements_for(db).select, (PLUGIN, f"{self.key}/client/{client_order_id}")).fetchone()
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
        row = db.execute_sql(self._statements_for(db).select, (PLUGIN, key)).fetchone()
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
