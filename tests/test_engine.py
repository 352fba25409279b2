"""The Engine as an embedding API: isolation between Engines, the threading
contract, misuse after close, the asyncio facade and PostgreSQL connection
handling (reconnect, TLS options in the URL)."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tradeguard import Engine, TradeguardError, hookimpl
from tradeguard.aio import AsyncEngine
from tradeguard.errors import DatabaseUnavailable


def open_engine(url: str, home: Path, **kwargs: Any) -> Engine:
    return Engine.open(url, home=home, load_entrypoints=False, **kwargs)


# -- several Engines in one process ----------------------------------------------------------


def test_engines_with_different_databases_do_not_share_state(tmp_path: Path, home: Path) -> None:
    with open_engine(f"sqlite:///{tmp_path / 'a.db'}", home) as a, open_engine(f"sqlite:///{tmp_path / 'b.db'}", home) as b:
        a.accounts.add("alpha", "paper")
        b.accounts.add("beta", "paper")
        a.accounts.add("alpha2", "paper")  # a again, after b was last used
        assert [x.name for x in a.accounts.list()] == ["alpha", "alpha2"]
        assert [x.name for x in b.accounts.list()] == ["beta"]
        a.set_setting("colour", "red")
        assert b.get_setting("colour") is None


def test_engines_do_not_share_plugins(tmp_path: Path, home: Path) -> None:
    class Extra:
        @hookimpl
        def register_exchanges(self, register):
            register("extra", lambda config: None)

    with open_engine(f"sqlite:///{tmp_path / 'a.db'}", home, plugins=[Extra()]) as a, \
            open_engine(f"sqlite:///{tmp_path / 'b.db'}", home) as b:
        assert "extra" in a.plugins.exchanges
        assert "extra" not in b.plugins.exchanges


def test_engines_used_from_threads_stay_apart(tmp_path: Path, home: Path) -> None:
    engines = [open_engine(f"sqlite:///{tmp_path / f'{i}.db'}", home) for i in range(3)]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(5):
                engines[index].accounts.add(f"e{index}-{n}", "paper")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        for index, engine in enumerate(engines):
            assert [a.name for a in engine.accounts.list()] == [f"e{index}-{n}" for n in range(5)]
    finally:
        for engine in engines:
            engine.close()


# -- threading contract: one Engine shared by threads ------------------------------------------


def test_one_engine_shared_between_threads(engine: Engine) -> None:
    """Each thread gets its own connection; concurrent writes all land, nothing is shared."""
    workers, per_thread = 6, 5
    connections: dict[int, int] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def work(index: int) -> None:
        try:
            barrier.wait()
            for n in range(per_thread):
                engine.accounts.add(f"t{index}-{n}", "paper")
                engine.accounts.list()
            connections[index] = id(engine.db.connection())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.db.close()  # this thread's connection only

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(connections.values())) == workers, "threads must not share a connection"
    names = [a.name for a in engine.accounts.list()]
    assert len(names) == workers * per_thread
    assert id(engine.db.connection()) not in connections.values()


def test_failed_transaction_in_one_thread_does_not_touch_another(engine: Engine) -> None:
    """A transaction rolled back in one thread leaves another thread's work alone."""
    inside = threading.Event()
    release = threading.Event()
    outcome: dict[str, Any] = {}

    def doomed() -> None:
        from tradeguard.storage import use_database
        from tradeguard.storage.models import Setting
        from tradeguard.clock import utcnow

        try:
            with use_database(engine.db), engine.db.atomic():
                Setting.create(key="doomed", value=1, updated_at=utcnow())
                inside.set()
                release.wait(10)
                raise RuntimeError("rolled back")
        except RuntimeError:
            outcome["rolled_back"] = True
        finally:
            engine.db.close()

    thread = threading.Thread(target=doomed)
    thread.start()
    assert inside.wait(10)
    if engine.backend == "postgres":  # SQLite's single writer would wait for the lock
        engine.set_setting("kept", 2)
    release.set()
    thread.join()
    if engine.backend == "sqlite":
        engine.set_setting("kept", 2)
    assert outcome == {"rolled_back": True}
    assert engine.get_setting("doomed") is None
    assert engine.get_setting("kept") == 2


# -- misuse --------------------------------------------------------------------------------


def test_closed_engine_is_a_clear_error(sqlite_engine: Engine) -> None:
    sqlite_engine.accounts.add("main", "paper")
    sqlite_engine.close()
    sqlite_engine.close()  # idempotent
    for call in (sqlite_engine.accounts.list, lambda: sqlite_engine.get_setting("x"),
                 lambda: sqlite_engine.exchange_for("main")):
        with pytest.raises(TradeguardError, match="this Engine is closed"):
            call()
    assert "closed" in repr(sqlite_engine)


def test_closed_engine_is_an_error_in_other_threads_too(sqlite_engine: Engine) -> None:
    sqlite_engine.close()
    seen: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(seen, sqlite_engine.accounts.list))
    thread.start()
    thread.join()
    assert len(seen) == 1 and "closed" in str(seen[0])


def _capture(into: list[BaseException], call: Any) -> None:
    try:
        call()
    except BaseException as exc:
        into.append(exc)


def test_engine_used_after_with_block(tmp_path: Path, home: Path) -> None:
    with open_engine(f"sqlite:///{tmp_path / 'x.db'}", home) as engine:
        pass
    with pytest.raises(TradeguardError, match="closed"):
        engine.accounts.add("late", "paper")


# -- asyncio facade ------------------------------------------------------------------------


def test_async_engine(tmp_path: Path, home: Path) -> None:
    threads: set[int] = set()

    class Recorder:
        @hookimpl
        def on_account_changed(self, action, account):
            threads.add(threading.get_ident())

    async def main() -> list[str]:
        async with await AsyncEngine.open(f"sqlite:///{tmp_path / 'async.db'}", home=home,
                                          load_entrypoints=False, plugins=[Recorder()]) as engine:
            await asyncio.gather(*(engine.accounts.add(f"bot{i}", "paper") for i in range(5)))
            await engine.set_setting("k", "v")
            assert await engine.get_setting("k") == "v"
            assert "paper" in engine.plugins.exchanges  # plain attributes pass through
            # Every service of the Engine is async, whether or not it subclasses Service.
            assert inspect.iscoroutinefunction(engine.risk.rules)
            assert inspect.iscoroutinefunction(engine.orders.list)
            assert any(rule["rule"] for rule in await engine.risk.rules("bot0"))
            names = [a.name for a in await engine.accounts.list()]
            closed = engine.sync
        assert closed._closed
        return names

    assert asyncio.run(main()) == [f"bot{i}" for i in range(5)]
    assert threads and threading.get_ident() not in threads, "calls must run in worker threads"


def test_async_engine_errors_propagate(sqlite_engine: Engine) -> None:
    from tradeguard import ValidationError

    async def main() -> None:
        engine = AsyncEngine(sqlite_engine)
        with pytest.raises(ValidationError):
            await engine.accounts.add("bad name!", "paper")

    asyncio.run(main())


# -- PostgreSQL connections ----------------------------------------------------------------


def _admin():
    from conftest import _admin_connect

    return _admin_connect()


def test_postgres_reconnects_after_dropped_connection(pg_url: str, home: Path) -> None:
    with open_engine(pg_url, home) as engine:
        engine.accounts.add("before", "paper")
        pid = engine.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        admin = _admin()
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                assert cur.fetchone()[0] is True
        finally:
            admin.close()
        assert [a.name for a in engine.accounts.list()] == ["before"]  # a read: reconnects
        assert engine.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0] != pid

        pid = engine.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        admin = _admin()
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        finally:
            admin.close()
        engine.accounts.add("after", "paper")  # a write: reconnects at BEGIN, nothing lost
        assert [a.name for a in engine.accounts.list()] == ["after", "before"]


def test_postgres_sslmode_passes_through_the_url(pg_url: str, home: Path) -> None:
    with open_engine(f"{pg_url}?sslmode=disable", home) as engine:
        assert engine.db.connection().info.ssl_in_use is False
        assert "sslmode=disable" in engine.db.connection().dsn
    with _admin().cursor() as cur:
        cur.execute("SHOW ssl")
        server_ssl = cur.fetchone()[0] == "on"
    if server_ssl:  # pragma: no cover - depends on the server
        with open_engine(f"{pg_url}?sslmode=require", home) as engine:
            assert engine.db.connection().info.ssl_in_use is True
    else:
        with pytest.raises(DatabaseUnavailable, match=r"cannot reach the database at 127\.0\.0\.1:5432: .*SSL") as info:
            open_engine(f"{pg_url}?sslmode=require", home)
        assert "\n" not in str(info.value)


def test_postgres_unknown_connection_option_is_a_clear_error(pg_url: str, home: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database"):
        open_engine(f"{pg_url}?sslmode=sometimes", home)


def test_postgres_close_releases_every_threads_connection(pg_url: str, home: Path) -> None:
    """The Engine owns its connections: closing it closes those other threads opened."""
    from urllib.parse import urlparse

    dbname = urlparse(pg_url).path.lstrip("/")

    def server_connections() -> int:
        admin = _admin()
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (dbname,))
                return cur.fetchone()[0]
        finally:
            admin.close()

    engine = open_engine(pg_url, home)
    ready = threading.Barrier(5)
    release = threading.Event()

    def work() -> None:  # a long-lived worker (a thread pool's, as under AsyncEngine)
        engine.accounts.list()
        ready.wait()
        release.wait(30)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    ready.wait()
    try:
        assert server_connections() == 5  # four workers and this thread
        engine.close()
        deadline = time.monotonic() + 10  # a backend leaves pg_stat_activity a moment after the client hangs up
        while server_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server_connections() == 0
    finally:
        release.set()
        for t in threads:
            t.join()


def test_engine_inherited_through_fork_is_refused(sqlite_engine: Engine) -> None:
    """A child process must open its own Engine: the parent's connection is not safe to share."""
    import multiprocessing

    sqlite_engine.accounts.add("main", "paper")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def child() -> None:
        try:
            sqlite_engine.accounts.list()
            queue.put("no error")
        except TradeguardError as exc:
            queue.put(str(exc))
        sqlite_engine.close()  # must not touch the parent's connection

    process = context.Process(target=child)
    process.start()
    message = queue.get(timeout=60)
    process.join(60)
    assert message.startswith(f"this Engine was opened in process {os.getpid()}; open a new Engine in each process")
    assert process.exitcode == 0
    assert [a.name for a in sqlite_engine.accounts.list()] == ["main"]  # the parent is unaffected
