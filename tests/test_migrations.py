"""Numbered migrations: up, down, up again, on both backends; data survives."""

from __future__ import annotations

import peewee
import pytest

from tradeguard import Engine
from tradeguard.errors import SchemaOutdated
from tradeguard.storage import connect, migrations, use_database
from tradeguard.storage.models import ALL_MODELS


def _tables(db):
    return set(db.get_tables())


def test_empty_to_head_to_zero_and_back(db_url):
    db = connect(db_url)
    with use_database(db):
        assert migrations.current(db) == 0
        migrations.upgrade(db)
        assert migrations.current(db) == migrations.head()
        assert {m._meta.table_name for m in ALL_MODELS} <= _tables(db)
        migrations.downgrade(db, 0)
        assert migrations.current(db) == 0
        assert _tables(db) <= {"schema_version"}
        migrations.upgrade(db)
        assert migrations.current(db) == migrations.head()
    db.close()


def test_live_models_match_head_schema(db_url):
    """Every column of the live models exists after migrating (the models and migrations agree)."""
    db = connect(db_url)
    with use_database(db):
        migrations.upgrade(db)
        for model in ALL_MODELS:
            columns = {c.name for c in db.get_columns(model._meta.table_name)}
            expected = {f.column_name for f in model._meta.sorted_fields}
            assert expected == columns, model._meta.table_name
    db.close()


def test_data_survives_an_upgrade_that_adds_a_column(db_url):
    db = connect(db_url)
    with use_database(db):
        migrations.upgrade(db, target=1)
        db.execute_sql("INSERT INTO account (name, exchange, mode, testnet, trading_state, trading_enabled, "
                       "require_confirmation, settings, max_position_size, max_daily_loss, max_open_positions, "
                       "max_leverage, slippage_tolerance, quote_currency, initial_capital, current_cash, frozen_cash, "
                       "credentials_verified, created_at, updated_at) VALUES ('old', 'paper', 'PAPER', true, "
                       "'ACTIVE', true, false, '{}', '1000', '100', 5, '1', '0.005', 'USDT', '5', '5', '0', false, "
                       "'2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')")
        assert "api_base_url" not in {c.name for c in db.get_columns("account")}
        migrations.upgrade(db)
        assert "api_base_url" in {c.name for c in db.get_columns("account")}
        row = db.execute_sql("SELECT name, initial_capital, api_base_url FROM account").fetchone()
        assert row[0] == "old" and str(row[1]) == "5" and row[2] is None
    db.close()


def test_outdated_database_refuses_to_open_outside_development(db_url, home):
    db = connect(db_url)
    with use_database(db):
        migrations.upgrade(db, target=1)
        db.execute_sql("CREATE TABLE IF NOT EXISTS setting (key VARCHAR(100) PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT)")
        db.execute_sql("UPDATE setting SET value = '\"production\"' WHERE key = 'profile'")
        db.execute_sql("INSERT INTO setting (key, value, updated_at) SELECT 'profile', '\"production\"', "
                       "'2026-01-01T00:00:00.000000Z' WHERE NOT EXISTS (SELECT 1 FROM setting WHERE key = 'profile')"
                       if db_url.startswith("sqlite") else
                       "INSERT INTO setting (key, value, updated_at) VALUES ('profile', '\"production\"', now()) ON CONFLICT DO NOTHING")
    db.close()
    with pytest.raises(SchemaOutdated, match="tradeguard db migrate"):
        Engine.open(db_url, home=home, load_entrypoints=False)


def test_outdated_development_database_migrates_itself(db_url, home):
    db = connect(db_url)
    with use_database(db):
        migrations.upgrade(db, target=1)
    db.close()
    with Engine.open(db_url, home=home, load_entrypoints=False) as engine:
        with use_database(engine.db):
            assert migrations.current(engine.db) == migrations.head()


def test_cli_migrate_downgrade_status(cli):
    assert cli("init").exit_code == 0
    status = cli.json("db", "status")
    assert status["current"] == status["head"] == migrations.head()
    down = cli.json("db", "downgrade", "--to", "1", "--yes")
    assert down == {"reverted": [2], "to": 1}
    up = cli.json("db", "migrate")
    assert up["applied"] == [2] and up["to"] == migrations.head()
    bad = cli("db", "downgrade", "--to", "99", "--yes")
    assert bad.exit_code == 2 and "no schema version 99" in bad.stderr
