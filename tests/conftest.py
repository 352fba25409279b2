"""Shared fixtures: databases (SQLite and PostgreSQL), Engines and the CLI.

PostgreSQL tests use a throwaway database created for the session on the
server at ``TRADEGUARD_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
Without a server they skip — unless ``TRADEGUARD_REQUIRE_POSTGRES=1`` (CI),
where a missing server fails the run, as does a run in which no PostgreSQL
test executed.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

ADMIN_URL = os.environ.get("TRADEGUARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("TRADEGUARD_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgres"]

_pg_tests_passed = 0


def _admin_connect(dbname: str | None = None):
    import psycopg2
    from urllib.parse import urlparse

    parsed = urlparse(ADMIN_URL)
    conn = psycopg2.connect(host=parsed.hostname, port=parsed.port or 5432, user=parsed.username or "postgres",
                            dbname=dbname or parsed.path.lstrip("/") or "postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, Any]]:
    """A throwaway PostgreSQL database for this test session."""
    try:
        admin = _admin_connect()
    except Exception as exc:  # no server
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (TRADEGUARD_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    name = f"tg_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    from urllib.parse import urlparse

    parsed = urlparse(ADMIN_URL)
    url = f"postgresql://{parsed.username or 'postgres'}@{parsed.hostname}:{parsed.port or 5432}/{name}"
    try:
        yield {"name": name, "url": url}
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def reset_postgres(server: dict[str, Any]) -> None:
    """Drop every table of the session database (a fresh, empty schema)."""
    conn = _admin_connect(server["name"])
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (server["name"],))
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    conn.close()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tradeguard.db'}"
    server = request.getfixturevalue("postgres_server")
    reset_postgres(server)
    request.node.user_properties.append(("backend", "postgres"))
    return server["url"]


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """An empty PostgreSQL database URL (PostgreSQL-only tests)."""
    server = request.getfixturevalue("postgres_server")
    reset_postgres(server)
    request.node.user_properties.append(("backend", "postgres"))
    return server["url"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def engine(db_url: str, home: Path) -> Iterator[Any]:
    """An open Engine on a new database (both backends), no third-party plugins."""
    from tradeguard import Engine

    with Engine.open(db_url, home=home, load_entrypoints=False) as eng:
        yield eng


@pytest.fixture
def sqlite_engine(tmp_path: Path, home: Path) -> Iterator[Any]:
    """An open Engine on a new SQLite database."""
    from tradeguard import Engine

    with Engine.open(f"sqlite:///{tmp_path / 'tg.db'}", home=home, load_entrypoints=False) as eng:
        yield eng


class Cli:
    """Runs the CLI in-process (click's CliRunner) against one home and database."""

    def __init__(self, home: Path, db_url: str | None):
        self.home = home
        self.db_url = db_url
        self.runner = CliRunner()

    @property
    def env(self) -> dict[str, str]:
        env = {"TRADEGUARD_HOME": str(self.home), "TRADEGUARD_DISABLE_PLUGINS": "1"}
        if self.db_url:
            env["TRADEGUARD_DATABASE_URL"] = self.db_url
        return env

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        from tradeguard.cli import cli

        result = self.runner.invoke(cli, list(args), input=input, env={**self.env, **(env or {})}, catch_exceptions=False)
        return result

    def json(self, *args: str, expect: int = 0, **kwargs: Any) -> Any:
        """Run with --json; assert the exit code; return the parsed stdout."""
        result = self(*args, "--json", **kwargs)
        assert result.exit_code == expect, (result.exit_code, result.output)
        return json.loads(result.stdout)


@pytest.fixture
def cli(home: Path, db_url: str) -> Cli:
    """The CLI on both backends."""
    return Cli(home, db_url)


@pytest.fixture
def sqlite_cli(home: Path) -> Cli:
    """The CLI on the default SQLite database in the home."""
    return Cli(home, None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _pg_tests_passed
    if report.when == "call" and report.passed and ("backend", "postgres") in report.user_properties:
        _pg_tests_passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_POSTGRES and exitstatus == 0 and session.testscollected and _pg_tests_passed == 0:
        print("\nTRADEGUARD_REQUIRE_POSTGRES=1 but no PostgreSQL test passed", file=sys.stderr)
        session.exitstatus = 1
