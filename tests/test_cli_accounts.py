"""`tradeguard account …` and the CLI's error contract, on both backends."""

from __future__ import annotations

import pytest

from tradeguard.storage import use_database
from tradeguard.storage.models import Account, AuditLog


def _count_rows(cli):
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as engine, use_database(engine.db):
        return Account.select().count(), AuditLog.select().count()


def test_new_account_has_safe_defaults(cli):
    data = cli.json("account", "add", "main", "--exchange", "paper")
    assert data["mode"] == "PAPER"
    assert data["network"] == "testnet"
    assert data["trading_state"] == "ACTIVE"
    assert data["limits"] == {"max_position_size": "1000", "max_daily_loss": "100", "max_open_positions": 5,
                              "max_leverage": "1", "slippage_tolerance": "0.005"}


def test_live_account_starts_disabled_and_requiring_confirmation(cli):
    data = cli.json("account", "add", "real", "--exchange", "paper", "--mode", "live")
    assert data["mode"] == "LIVE"
    assert data["trading_enabled"] is False
    assert data["require_confirmation"] is True
    assert data["network"] == "testnet"
    enabled = cli.json("account", "set", "real", "--enable-trading", "--mainnet")
    assert enabled["trading_enabled"] is True and enabled["network"] == "mainnet"


def test_list_show_set_remove(cli):
    cli.json("account", "add", "b", "--exchange", "paper", "--max-position-size", "250.50",
             "--slippage-tolerance", "1%", "--max-positions", "3")
    cli.json("account", "add", "a", "--exchange", "paper")
    assert [a["name"] for a in cli.json("account", "list")] == ["a", "b"]
    shown = cli.json("account", "show", "b")
    assert shown["limits"]["max_position_size"] == "250.5"
    assert shown["limits"]["slippage_tolerance"] == "0.01"
    assert shown["limits"]["max_open_positions"] == 3
    changed = cli.json("account", "set", "b", "--max-daily-loss", "42.5", "--api-base-url", "https://eu.example.com/")
    assert changed["limits"]["max_daily_loss"] == "42.5"
    assert changed["api_base_url"] == "https://eu.example.com"
    text = cli("account", "show", "b")
    assert "https://eu.example.com" in text.stdout and "testnet" in text.stdout
    assert cli.json("account", "remove", "a", "--yes") == {"account": "a", "outcome": "deleted"}
    assert [a["name"] for a in cli.json("account", "list")] == ["b"]


def test_changes_are_audited_with_old_and_new_values(cli):
    cli.json("account", "add", "x", "--exchange", "paper")
    cli.json("account", "set", "x", "--max-daily-loss", "50")
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as engine, use_database(engine.db):
        entry = AuditLog.select().where(AuditLog.action == "account.set").get()
    assert '"old":{"max_daily_loss":"100"}' in entry.payload
    assert '"new":{"max_daily_loss":"50"}' in entry.payload


def test_account_with_history_is_archived_not_deleted(cli):
    assert cli("db", "seed").exit_code == 0
    assert cli.json("account", "remove", "paper-demo", "--yes")["outcome"] == "archived"
    assert cli.json("account", "list") == []
    archived = cli.json("account", "list", "--archived")
    assert archived[0]["name"] == "paper-demo" and archived[0]["archived"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-position-size", "-5"], "must not be negative"),
        (["--max-daily-loss", "abc"], "is not a number"),
        (["--max-daily-loss", "NaN"], "not a finite number"),
        (["--max-position-size", "Infinity"], "not a finite number"),
        (["--max-positions", "2.5"], "whole number"),
        (["--slippage-tolerance", "150%"], "100% or more"),
        (["--exchange", "nosuchvenue"], "unknown exchange 'nosuchvenue'"),
        (["--mode", "yolo"], "Invalid value for '--mode'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(cli, args, message):
    assert cli("init").exit_code == 0
    before = _count_rows(cli)
    full = ["account", "add", "bad"] + (args if "--exchange" in args else ["--exchange", "paper"] + args)
    result = cli(*full)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 or "Usage" in result.stderr
    assert _count_rows(cli) == before


def test_duplicate_name_exits_2_and_keeps_the_first(cli):
    cli.json("account", "add", "dup", "--exchange", "paper", "--max-daily-loss", "7")
    result = cli("account", "add", "dup", "--exchange", "paper")
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert cli.json("account", "show", "dup")["limits"]["max_daily_loss"] == "7"


def test_unknown_account_exits_2(cli):
    result = cli("account", "show", "ghost")
    assert result.exit_code == 2 and result.stderr.strip() == "error: no account named 'ghost'"


def test_set_without_changes_is_bad_input(cli):
    cli.json("account", "add", "n", "--exchange", "paper")
    assert cli("account", "set", "n").exit_code == 2


def test_remove_without_yes_asks(cli):
    cli.json("account", "add", "keep", "--exchange", "paper")
    result = cli("account", "remove", "keep", input="n\n")
    assert result.exit_code == 2
    assert [a["name"] for a in cli.json("account", "list")] == ["keep"]
