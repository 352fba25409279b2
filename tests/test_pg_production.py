"""PostgreSQL in production: a least-privilege role from `db grants`, statement timeout,
TLS (sslmode) and the application name, all passed through the database URL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import peewee
import psycopg2
import pytest

from conftest import Cli
from ops_helpers import new_master_key, open_engine
from tradeguard.config import load_settings
from tradeguard.doctor import run_checks
from tradeguard.errors import DatabaseUnavailable
from tradeguard.retention import prune

pytestmark = pytest.mark.postgres


def admin(url: str) -> Any:
    parsed = urlparse(url)
    conn = psycopg2.connect(host=parsed.hostname, port=parsed.port or 5432, user=parsed.username or "postgres",
                            dbname=parsed.path.lstrip("/"), connect_timeout=5)
    conn.autocommit = True
    return conn


def as_role(url: str, role: str) -> str:
    parsed = urlparse(url)
    return parsed._replace(netloc=f"{role}@{parsed.hostname}:{parsed.port or 5432}").geturl()


@pytest.fixture
def app_role(pg_url: str) -> Iterator[str]:
    """A fresh LOGIN role with no privileges (dropped afterwards)."""
    role = f"tg_app_{uuid.uuid4().hex[:8]}"
    conn = admin(pg_url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield role
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')
        conn.close()


def test_granted_role_runs_tradeguard_but_cannot_alter_schema_or_history(pg_url, app_role, home, tmp_path):
    key = new_master_key()
    with open_engine(pg_url, home):  # the owner creates the schema (`tradeguard db migrate`)
        pass
    owner_cli = Cli(home, pg_url)
    printed = owner_cli("db", "grants", "--role", app_role)
    assert printed.exit_code == 0, printed.output
    statements = [line for line in printed.stdout.splitlines() if line and not line.startswith("--")]
    assert all(s.startswith("GRANT ") and s.endswith(";") for s in statements)
    conn = admin(pg_url)
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)

    url = as_role(pg_url, app_role)
    with open_engine(url, home, key) as engine:  # vault initialised by the app role
        assert engine.db.execute_sql("SELECT current_user").fetchone()[0] == app_role
        engine.accounts.add("main", "paper", initial_capital="10000")
        engine.accounts.set("main", max_daily_loss="250")
        engine.vault.set_credentials("main", {"api_key": "k", "api_secret": "s"})
        order = engine.place_order("main", "BTC/USDT", "buy", "0.001")
        assert order.status.value == "FILLED"
        engine.trading.emergency_stop("main", reason="drill")
        engine.trading.resume("main", by="ops", notes="drill over")
        engine.audit.checkpoint("test")
        assert engine.audit.verify().ok
        prune(engine, older_than="30d")
        if hasattr(engine, "backups"):
            engine.backups.create(f"file://{tmp_path / 'backups'}")
        settings = load_settings(cli={"home": str(home), "database_url": url}, env={})
        report = run_checks(settings, lambda: engine, master_key=key)
        assert not [c for c in report.checks if c.status == "fail"], report.as_dict()

        for statement in ('DROP TABLE "account"', 'ALTER TABLE "account" ADD COLUMN x INT',
                          'UPDATE "audit_log" SET actor = \'mallory\'', 'DELETE FROM "audit_log"',
                          'DELETE FROM "audit_checkpoint"', 'DELETE FROM "schema_version"',
                          'CREATE TABLE "sneaky" (id INT)'):
            with pytest.raises(peewee.DatabaseError, match="permission denied|must be owner"):
                with engine.db.atomic():
                    engine.db.execute_sql(statement)

    # `db copy --force` onto the database needs the owner: the app role is refused, nothing changes
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with open_engine(source, home) as engine:
        engine.accounts.add("from-sqlite", "paper")
    copy = Cli(home, source)("db", "copy", "--to", url, "--force", "--yes")
    assert copy.exit_code == 1 and "connect as the database owner" in copy.stderr
    with open_engine(url, home) as engine:
        assert [a.name for a in engine.accounts.list()] == ["main"]
    conn.close()


@pytest.mark.parametrize("args,text", [
    (["--role", "bad role; DROP"], "role 'bad role; DROP'"),
    (["--role", "app", "--database", 'x"y'], "database 'x\"y'"),
])
def test_grants_refuse_names_that_need_quoting(pg_url, home, args, text):
    result = Cli(home, pg_url)("db", "grants", *args)
    assert result.exit_code == 2 and text in result.stderr


def test_grants_need_a_database_name_without_postgres(sqlite_cli):
    result = sqlite_cli("db", "grants", "--role", "app")
    assert result.exit_code == 2 and "--database" in result.stderr
    result = sqlite_cli("db", "grants", "--role", "app", "--database", "tg")
    assert result.exit_code == 0 and 'GRANT CONNECT ON DATABASE "tg" TO "app";' in result.stdout
    assert 'GRANT SELECT, INSERT ON TABLE "public"."audit_log" TO "app";' in result.stdout


def test_statement_timeout_and_application_name_reach_the_server(pg_url, home):
    url = f"{pg_url}?options=-c%20statement_timeout%3D5000&application_name=tg-host-a"
    with open_engine(url, home) as engine:
        assert engine.db.execute_sql("SHOW statement_timeout").fetchone()[0] == "5s"
        assert engine.db.execute_sql("SHOW application_name").fetchone()[0] == "tg-host-a"
    with open_engine(f"{pg_url}?options=-c%20statement_timeout%3D100", home) as engine:
        with pytest.raises(peewee.DatabaseError, match="statement timeout"):
            engine.db.execute_sql("SELECT pg_sleep(2)")


def test_sslmode_reaches_libpq(pg_url, home):
    with open_engine(f"{pg_url}?sslmode=disable", home) as engine:
        row = engine.db.execute_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row[0] is False
        server_ssl = engine.db.execute_sql("SHOW ssl").fetchone()[0] == "on"
    if server_ssl:
        with open_engine(f"{pg_url}?sslmode=require", home) as engine:
            assert engine.db.execute_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
    else:
        with pytest.raises(DatabaseUnavailable, match="SSL"):
            open_engine(f"{pg_url}?sslmode=require", home)
