"""Order hot path: market orders through the Engine on the paper venue vs. the same SQL on the raw driver.

    .venv/bin/python bench/order_path.py [--orders 5000] [--blocks 20]
                                         [--db sqlite|postgresql://USER@HOST:PORT/DBNAME]

What is measured: ``engine.place_order`` of N market orders (alternating buy
and sell of 0.001 BTC at a fixed paper price) on a fresh database — SQLite:
a file on disk, WAL, synchronous=FULL; PostgreSQL: a scratch database
created (and dropped) on the given server — with the default risk rules
(the rate limit raised so 5,000 orders a minute pass) and the audit chain
sealed (vault unlocked). Each order is the full guarded path: risk check and
order intent committed, then the venue, then the fill committed.

Baseline, measured in the same run: the statements the Engine executed for
two buys and two sells after its warm-up (captured from peewee's DEBUG log,
with the transaction boundaries), replayed as pre-built SQL on the raw driver
(``sqlite3`` / ``psycopg2``), with the per-order unique values (ids, client
order ids, trade ids, audit sequence numbers) advanced, in the same two
durable transactions — no Python logic at all. The replay runs on a second
database given the same setup and the same first orders through an Engine,
so it meets the same rows, and the two sides run in alternating blocks
(engine block, baseline block, …): both databases grow alike (the rate-limit
and daily-PnL counts scan the same number of rows on both sides), and a
machine whose speed drifts during the run slows both alike. The ratio
engine/baseline is the overhead of everything tradeguard does beyond its
unavoidable SQL and commits. Prints orders/s, p50/p99 latency, statement and
commit counts, per-CPU-second figures (the process's CPU time) and the spread
of the per-block ratios.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from tradeguard import Engine
from tradeguard.storage import use_database

ACCOUNT = "bench"
SYMBOL = "BTC/USDT"
QTY = "0.001"
MASTER_KEY = "order-path-bench-passphrase"
COMMIT = ("__COMMIT__", None)
BEGIN = ("__BEGIN__", None)


# -- the Engine run ---------------------------------------------------------------------------


def setup(engine: Engine) -> None:
    """A paper account with plenty of cash, a fixed price and the rate limit out of the way."""
    engine.accounts.add(ACCOUNT, "paper", initial_capital="100000000", max_position_size="1000000000",
                        max_daily_loss="1000000000")
    engine.risk.set(ACCOUNT, "order_rate_limit", {"max_orders_per_minute": 10_000_000})
    venue = engine.orders.venues.for_account(engine.accounts.get(ACCOUNT))
    venue.set_price(SYMBOL, "100")


def place(engine: Engine, i: int) -> None:
    engine.place_order(ACCOUNT, SYMBOL, "buy" if i % 2 == 0 else "sell", QTY, actor="bench")


class Timing:
    """Per-order latencies and the wall and CPU seconds of one side, summed over its blocks."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.wall = 0.0
        self.cpu = 0.0
        self.blocks: list[float] = []  # wall seconds per order, per block

    def block(self, orders: list[Any], run_one: Any) -> None:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for order in orders:
            start = time.perf_counter()
            run_one(order)
            self.latencies.append(time.perf_counter() - start)
        wall = time.perf_counter() - wall0
        self.wall += wall
        self.cpu += time.process_time() - cpu0
        self.blocks.append(wall / max(1, len(orders)))


class Capture(logging.Handler):
    """Collects peewee's ``(sql, params)`` debug records and the BEGIN/COMMIT boundaries."""

    def __init__(self, db: Any):
        super().__init__(logging.DEBUG)
        self.db = db
        self.items: list[tuple[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):
            sql, params = record.msg
            self.items.append((sql, tuple(params or ())))

    def __enter__(self) -> "Capture":
        db = self.db
        self._saved = {name: getattr(db, name) for name in ("begin", "commit", "rollback")}

        def wrap(name: str, marker: tuple[str, Any]) -> Any:
            original = self._saved[name]

            def call(*args: Any, **kwargs: Any) -> Any:
                self.items.append(marker)
                return original(*args, **kwargs)
            return call

        db.begin = wrap("begin", BEGIN)
        db.commit = wrap("commit", COMMIT)
        db.rollback = wrap("rollback", ("__ROLLBACK__", None))
        logger = logging.getLogger("peewee")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        logger = logging.getLogger("peewee")
        logger.removeHandler(self)
        logger.setLevel(self._level)
        for name in ("begin", "commit", "rollback"):
            delattr(self.db, name)


def capture(engine: Engine, first: int) -> tuple[list[list[tuple[str, Any]]], int]:
    """The statement lists of four orders (buy, sell, buy, sell) placed from order number *first*.

    An order that also runs occasional housekeeping (the paper venue prunes its archive every
    hundredth order) executes extra statements; then the next four orders are captured instead, so
    the baseline replays the common path (the engine's run paid for the housekeeping)."""
    for attempt in range(5):
        out = []
        for i in range(first + 4 * attempt, first + 4 * attempt + 4):
            with Capture(engine.db) as cap:
                place(engine, i)
            out.append(cap.items)
        if all([s for s, _ in out[k]] == [s for s, _ in out[k + 2]] for k in (0, 1)):
            break
    return out, first + 4 * attempt + 4  # the captures, and how many orders the account has placed


# -- the baseline -----------------------------------------------------------------------------


def _is_plain_sql(sql: str) -> bool:
    return not sql.startswith("__")


def two_transactions(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The captured statements regrouped into the two durable transactions of an order.

    The intent transaction (the one inserting the order) stays as it is;
    every statement after it up to the end of the fill transaction (the one
    inserting the trade) — the venue's own book writes included — becomes the
    second transaction; statements before the intent and after the fill run
    outside any transaction (reads), as the Engine ran them.
    """
    transactions, current, start = [], None, 0
    for index, (sql, _) in enumerate(items):
        if sql == BEGIN[0]:
            start, current = index, []
        elif sql == COMMIT[0]:
            transactions.append((start, index, current))
            current = None
        elif current is not None:
            current.append(sql)
    intent = next((s, e) for s, e, sqls in transactions if any(q.startswith('INSERT INTO "order"') for q in sqls))
    fill = [(s, e) for s, e, sqls in transactions if any(q.startswith('INSERT INTO "trade"') for q in sqls)][-1]
    # markers go, and so do the venue book's durability relaxations: both baseline commits are durable
    def plain(part: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        out = []
        for sql, params in part:
            if not _is_plain_sql(sql) or sql.startswith("PRAGMA synchronous"):
                continue
            if sql.startswith(RELAXED[1]):  # "SET LOCAL synchronous_commit TO OFF; <statement>"
                sql = sql.split(";", 1)[1].strip()
            out.append((sql, params))
        return out

    return (plain(items[: intent[0]]) + [BEGIN] + plain(items[intent[0]: intent[1]]) + [COMMIT]
            + [BEGIN] + plain(items[intent[1]: fill[1]]) + [COMMIT] + plain(items[fill[1]:]))


RELAXED = ("PRAGMA synchronous = NORMAL", "SET LOCAL synchronous_commit")
WRITES = ("INSERT", "UPDATE", "DELETE")


def durable_commits(items: list[tuple[str, Any]]) -> int:
    """Commits that wrote something and were not relaxed (the paper book's commits are durable with the next one)."""
    durable, wrote, relaxed = 0, False, False
    for sql, _ in items:
        if sql.startswith(RELAXED):
            relaxed = True
        elif sql == COMMIT[0]:
            durable += wrote and not relaxed
            wrote = relaxed = False
        elif sql.lstrip().upper().startswith(WRITES):
            wrote = True
    return durable


def template(first: list[tuple[str, Any]], second: list[tuple[str, Any]]) -> list[tuple[str, Any, Any]]:
    """Pair two captures of the same kind of order: (sql, params, per-order deltas).

    Integers that differ advance by their difference per pair of orders;
    strings that differ are unique values (client order ids, trade ids,
    hashes, timestamps) and get a fresh value per replayed order.
    """
    if [s for s, _ in first] != [s for s, _ in second]:
        raise SystemExit("the two captured orders executed different statements; cannot build the baseline")
    out = []
    for (sql, p1), (_, p2) in zip(first, second):
        if not _is_plain_sql(sql):
            out.append((sql, None, None))
            continue
        deltas = []
        for a, b in zip(p1, p2):
            if a == b:
                deltas.append(None)
            elif isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
                deltas.append(("int", b - a))
            elif isinstance(a, str):
                deltas.append(("str", None))
            else:
                deltas.append(("keep", None))
        out.append((sql, p2, deltas))
    return out


def bind(tmpl: list[tuple[str, Any, Any]], step: int, unique: str) -> list[tuple[str, tuple]]:
    """The statements of the *step*-th replayed order (ints advanced, unique strings re-made)."""
    out = []
    for sql, params, deltas in tmpl:
        if params is None:
            out.append((sql, ()))
            continue
        values = []
        for value, delta in zip(params, deltas):
            if delta is None or delta[0] == "keep":
                values.append(value)
            elif delta[0] == "int":
                values.append(value + delta[1] * step)
            else:  # a unique string: same length, different value
                suffix = unique
                values.append((value[: max(0, len(value) - len(suffix))] + suffix) if len(value) > len(suffix) else suffix)
        out.append((sql, tuple(values)))
    return out


def baseline_orders(pair: list[list[tuple[str, Any, Any]]], n: int) -> list[list[tuple[str, tuple]]]:
    """The statements of *n* replayed orders (alternating the buy and sell templates), built before timing:
    no Python logic inside the timed loop beyond the driver."""
    token = uuid.uuid4().hex[:6]
    return [bind(pair[i % 2], i // 2 + 1, f"{token}{i}") for i in range(n)]


def replayer(conn: Any, dialect: str) -> Any:
    """A function executing one replayed order's statements on the raw connection *conn*."""
    cur = conn.cursor()
    begin = "BEGIN IMMEDIATE" if dialect == "sqlite" else "BEGIN"

    def replay(statements: list[tuple[str, tuple]]) -> None:
        for sql, params in statements:
            if sql == BEGIN[0]:
                cur.execute(begin)
            elif sql == COMMIT[0]:
                cur.execute("COMMIT")
            elif sql.startswith("__"):
                raise SystemExit(f"unexpected marker {sql} in the captured order")
            else:
                cur.execute(sql, params)
                if cur.description is not None:
                    cur.fetchall()
    return replay


# -- databases --------------------------------------------------------------------------------


def sqlite_target(work: Path, name: str) -> tuple[str, Any, Any]:
    path = work / f"{name}.db"

    def raw() -> Any:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        for pragma in ("journal_mode=wal", "synchronous=full", "foreign_keys=1", "busy_timeout=30000"):
            conn.execute(f"PRAGMA {pragma}")
        from tradeguard.storage.fields import decimal_collation

        conn.create_collation("DECIMAL", decimal_collation)
        return conn
    return f"sqlite:///{path}", raw, None


def postgres_target(server_url: str) -> tuple[str, Any, Any]:
    import psycopg2

    parsed = urlparse(server_url)
    name = f"tg_bench_{uuid.uuid4().hex[:8]}"
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    url = urlunparse(parsed._replace(path=f"/{name}"))

    def admin(sql: str) -> None:
        conn = psycopg2.connect(admin_url)
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    admin(f'CREATE DATABASE "{name}"')

    def raw() -> Any:
        conn = psycopg2.connect(url)
        conn.autocommit = True  # explicit BEGIN/COMMIT, as peewee does
        return conn

    return url, raw, lambda: admin(f'DROP DATABASE IF EXISTS "{name}"')


# -- report -----------------------------------------------------------------------------------


def summary(name: str, latencies: list[float], wall: float, cpu: float) -> dict[str, float]:
    ordered = sorted(latencies)
    n = len(ordered)
    figures = {"rate": n / wall, "p50": statistics.median(ordered) * 1000,
               "p99": ordered[min(n - 1, int(n * 0.99))] * 1000, "cpu_rate": n / cpu if cpu else float("inf")}
    print(f"  {name:<9} {figures['rate']:9.1f} orders/s   p50 {figures['p50']:7.2f} ms   p99 {figures['p99']:7.2f} ms"
          f"   {figures['cpu_rate']:9.1f} orders/CPU-s  ({n} orders, {wall:.2f} s wall, {cpu:.2f} s CPU)")
    return figures


def count(statements: list[tuple[str, Any]]) -> tuple[int, int]:
    return sum(1 for s, _ in statements if _is_plain_sql(s)), sum(1 for s, _ in statements if s == COMMIT[0])


WARM_UP = 20


def history(url: str, home: Path, orders: int) -> None:
    """The baseline's database: the same setup and the same *orders* first orders as the Engine's, so the
    replayed statements meet the same rows and the ids and sequence numbers they advance line up."""
    with Engine.open(url, home=home, load_entrypoints=False, master_key=MASTER_KEY) as engine:
        with use_database(engine.db):
            setup(engine)
            for i in range(orders):
                place(engine, i)


def bench(backend: str, targets: list[tuple[str, Any, Any]], work: Path, n: int, blocks: int,
          show: bool = False) -> None:
    """Engine and baseline on two databases with the same history, timed in alternating blocks of orders
    (a machine whose speed drifts during the run slows both alike)."""
    (url, _, _), (base_url, base_raw, _) = targets
    dialect = "sqlite" if backend == "SQLite" else "postgres"
    engine_side, base_side = Timing(), Timing()
    with Engine.open(url, home=_home(work, "engine"), load_entrypoints=False, master_key=MASTER_KEY) as engine:
        with use_database(engine.db):
            setup(engine)
            for i in range(WARM_UP):  # warm-up: caches, first position row, prepared statements
                place(engine, i)
            captured, placed = capture(engine, WARM_UP)
        history(base_url, _home(work, "baseline"), placed)
        statements, commits = count(captured[0])
        sell_statements, sell_commits = count(captured[1])
        regrouped = [two_transactions(items) for items in captured]
        pair = [template(regrouped[0], regrouped[2]), template(regrouped[1], regrouped[3])]
        replays = baseline_orders(pair, n)
        conn = base_raw()
        try:
            replay = replayer(conn, dialect)
            size = -(-n // blocks)
            with use_database(engine.db):
                for first in range(0, n, size):
                    numbers = range(placed + first, placed + min(n, first + size))
                    engine_side.block(list(numbers), lambda i: place(engine, i))
                    base_side.block(replays[first: first + size], replay)
        finally:
            conn.close()
        report = engine.audit.verify(record=False)
        if not (report.ok and report.keyed and report.unsealed == 0):
            raise SystemExit(f"the audit chain does not verify sealed after the run: {report.message}")

    load = os.getloadavg()[0]
    print(f"{backend}: {n} market orders, default rules, sealed audit "
          f"(load average {load:.1f} on {os.cpu_count()} CPUs{'; the machine is loaded' if load > 1 else ''})")
    print(f"  statements per order: engine {statements} (buy) / {sell_statements} (sell), "
          f"commits {commits} / {sell_commits} (durable: {durable_commits(captured[0])}); baseline replays the same "
          f"statements in 2 durable transactions ({count(regrouped[0])[0]} / {count(regrouped[1])[0]} statements)")
    engine_fig = summary("engine", engine_side.latencies, engine_side.wall, engine_side.cpu)
    base_fig = summary("baseline", base_side.latencies, base_side.wall, base_side.cpu)
    per_block = sorted(e / b for e, b in zip(engine_side.blocks, base_side.blocks))
    print(f"  ratio engine/baseline: {base_fig['rate'] / engine_fig['rate']:.2f}x wall time per order, "
          f"p99 {engine_fig['p99'] / base_fig['p99']:.2f}x, {base_fig['cpu_rate'] / engine_fig['cpu_rate']:.2f}x CPU "
          f"per order; audit chain verified ({report.entries} sealed entries)")
    print(f"  per block of {-(-n // blocks)} orders (engine block, then baseline block, alternating): ratio "
          f"min {per_block[0]:.2f}x, median {statistics.median(per_block):.2f}x, max {per_block[-1]:.2f}x")
    if show:
        for sql, params in captured[0]:
            text = f"{sql}  {params if params else ''}"
            print(f"    {text[:300]}{' …' if len(text) > 300 else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000, help="market orders to place (default 5000)")
    parser.add_argument("--db", default="sqlite",
                        help="'sqlite' (a temp file) or a PostgreSQL server URL; a scratch database is created "
                             "there and dropped afterwards, e.g. postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--blocks", type=int, default=20,
                        help="alternate engine and baseline in this many blocks of orders (default 20)")
    parser.add_argument("--show-statements", action="store_true", help="print the captured statements of one buy")
    args = parser.parse_args()
    if args.orders < 2:
        parser.error("--orders: at least 2")
    if not 1 <= args.blocks <= args.orders:
        parser.error("--blocks: from 1 to --orders")
    if args.db != "sqlite" and not args.db.startswith(("postgres://", "postgresql://")):
        parser.error("--db: 'sqlite' or a postgresql:// URL")
    work = Path(tempfile.mkdtemp(prefix="tg-order-bench-"))
    targets: list[tuple[str, Any, Any]] = []
    try:
        for name in ("engine", "baseline"):
            targets.append(sqlite_target(work, name) if args.db == "sqlite" else postgres_target(args.db))
        bench("SQLite" if args.db == "sqlite" else "PostgreSQL", targets, work, args.orders, args.blocks,
              args.show_statements)
    finally:
        for _, _, drop in targets:
            if drop is not None:
                drop()
        shutil.rmtree(work, ignore_errors=True)


def _home(work: Path, name: str) -> Path:
    home = work / f"home-{name}"
    home.mkdir(mode=0o700)
    return home


if __name__ == "__main__":
    sys.exit(main())
