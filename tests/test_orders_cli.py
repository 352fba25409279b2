"""The order, risk and state commands end to end on the paper venue (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest


def setup_account(cli, name="p", *extra):
    result = cli("account", "add", name, "--exchange", "paper", "--initial-capital", "100000", *extra)
    assert result.exit_code == 0, result.output


def fix_price(cli, name="p", price="100"):
    from tradeguard import Engine

    with Engine.open(cli.db_url or None, home=cli.home, load_entrypoints=False) as engine:
        engine.orders.venues.for_account(engine.accounts.get(name)).set_price("BTC/USDT", price)


def test_place_list_show_cancel(cli):
    setup_account(cli, "p", "--max-position-size", "500")
    fix_price(cli)
    placed = cli.json("order", "place", "p", "BTC/USDT", "buy", "1", "--reason", "entry", "--by", "alice")
    assert placed["status"] == "FILLED" and placed["created_by"] == "alice" and placed["reason"] == "entry"
    resting = cli.json("order", "place", "p", "BTC/USDT", "buy", "1", "--type", "limit", "--price", "90")
    assert resting["status"] == "OPEN"
    text = cli("order", "place", "p", "btc/usdt", "buy", "0.5", "--type", "limit", "--price", "80")
    assert text.exit_code == 0 and "-> OPEN" in text.output
    listed = cli.json("order", "list", "p", "--status", "OPEN")
    assert [o["id"] for o in listed] == [3, 2]
    assert len(cli.json("order", "list", "--since", "1h")) == 3
    assert cli.json("order", "list", "--since", "2099-01-01") == []
    shown = cli.json("order", "show", str(resting["id"]))
    assert [e["new"] for e in shown["events"]] == ["PENDING_SUBMIT", "OPEN"]
    assert cli.json("order", "show", resting["client_order_id"])["id"] == resting["id"]
    human = cli("order", "show", str(resting["id"]))
    assert "PENDING_SUBMIT -> OPEN" in human.output
    cancelled = cli.json("order", "cancel", str(resting["id"]), "--reason", "no longer needed")
    assert cancelled["status"] == "CANCELED"
    again = cli("order", "cancel", str(resting["id"]))
    assert again.exit_code == 2 and "already CANCELED" in again.stderr


def test_refused_order_exits_3_naming_the_rule_and_numbers(cli):
    setup_account(cli, "p", "--max-position-size", "150")
    fix_price(cli)
    result = cli("order", "place", "p", "BTC/USDT", "buy", "2", "--type", "limit", "--price", "100")
    assert result.exit_code == 3
    assert "max_position_size" in result.stderr and "200 > max_position_size 150" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    data = cli.json("order", "place", "p", "BTC/USDT", "buy", "2", "--type", "limit", "--price", "100", expect=3)
    assert data["status"] == "rejected" and data["sent"] is False
    explained = cli.json("order", "explain", str(data["order_id"]))
    blocking = [r for r in explained["risk"]["rules"] if r["verdict"] == "block"]
    assert [r["rule"] for r in blocking] == ["max_position_size"]
    assert blocking[0]["metrics"] == {"limit": "150", "position_after": "200"}
    assert "max_position_size" in cli("order", "explain", str(data["order_id"])).output
    log = cli.json("risk", "log", "p")
    assert log[0]["rule"] == "max_position_size" and log[0]["event_type"] == "BLOCK"
    assert "max_position_size" in cli("risk", "log").output


def test_confirmation_flow_exits_3_with_the_command_to_run(cli):
    setup_account(cli, "live", "--mode", "live")
    assert cli("account", "set", "live", "--enable-trading").exit_code == 0
    fix_price(cli, "live")
    result = cli("order", "place", "live", "BTC/USDT", "buy", "1", "--yes")
    assert result.exit_code == 3 and "tradeguard order confirm 1 --by NAME" in result.stderr
    data = cli.json("order", "place", "live", "BTC/USDT", "buy", "1", "--yes", expect=3)
    assert data["status"] == "pending_confirmation"
    assert cli("order", "confirm", "1").exit_code == 2  # --by is required
    confirmed = cli.json("order", "confirm", "1", "--by", "carol")
    assert confirmed["status"] == "FILLED" and confirmed["confirmed_by"] == "carol"


def test_bad_input_exits_2_and_stores_nothing(cli):
    setup_account(cli)
    for args, message in [(("BTC/USDT", "buy", "--", "-1"), "greater than zero"),
                          (("BTC/USDT", "buy", "0"), "greater than zero"),
                          (("BTC/USDT", "buy", "abc"), "not a number"),
                          (("BTC/USDT", "buy", "1", "--type", "limit"), "needs a price"),
                          (("DOGE/USDT", "buy", "1"), "unknown symbol")]:
        result = cli("order", "place", "p", *args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
    assert cli.json("order", "list") == []
    assert cli("order", "show", "999").exit_code == 2
    assert cli("order", "list", "--status", "SOMETIMES").exit_code == 2
    assert cli("order", "list", "--since", "yesterday-ish").exit_code == 2


def test_risk_rules_enable_disable_set(cli):
    setup_account(cli)
    rules = {r["rule"]: r for r in cli.json("risk", "rules", "p")}
    assert rules["max_daily_loss"]["settings"]["auto_stop"] is False
    assert rules["emergency_stop"]["mandatory"] is True
    assert "max_position_size" in cli("risk", "rules").output
    assert cli.json("risk", "disable", "p", "slippage_tolerance")[0]["enabled"] is False
    assert cli.json("risk", "enable", "p", "slippage_tolerance")[0]["enabled"] is True
    updated = cli.json("risk", "set", "p", "order_rate_limit", "max_orders_per_minute=5", "warn_at=0.5")
    assert updated["settings"] == {"max_orders_per_minute": 5, "warn_at": "0.5"}
    bad = cli("risk", "set", "p", "order_rate_limit", "max_orders_per_minute=lots")
    assert bad.exit_code == 2 and "max_orders_per_minute" in bad.stderr
    assert cli("risk", "set", "p", "order_rate_limit", "novalue").exit_code == 2
    assert cli("risk", "disable", "p", "emergency_stop").exit_code == 2
    assert cli("risk", "enable", "p", "nope").exit_code == 2


def test_state_stop_reduce_resume(cli):
    setup_account(cli)
    fix_price(cli)
    cli.json("order", "place", "p", "BTC/USDT", "buy", "1")
    cli.json("order", "place", "p", "BTC/USDT", "buy", "1", "--type", "limit", "--price", "50")
    assert cli("stop", "--reason", "x").exit_code == 2  # ACCOUNT or --all
    assert cli("stop", "p").exit_code == 2  # --reason is required
    stopped = cli.json("stop", "p", "--reason", "bot misbehaves")
    assert stopped["orders_cancelled"] == 1 and stopped["event_type"] == "HALT"
    state = cli.json("state", "p")
    assert state["accounts"][0]["state"] == "HALTED" and state["open_events"][0]["reason"] == "bot misbehaves"
    refused = cli("order", "place", "p", "BTC/USDT", "sell", "0.5")
    assert refused.exit_code == 3 and "HALTED" in refused.stderr
    assert cli.json("order", "place", "p", "BTC/USDT", "sell", "0.5", expect=3)["status"] == "halted"
    assert cli("resume", "p").exit_code == 2  # --by is required
    resumed = cli.json("resume", "p", "--by", "erin", "--notes", "fixed")
    assert resumed["resolved_events"] == 1
    assert cli.json("reduce", "p", "--reason", "wind down")["event_type"] == "REDUCE"
    assert cli("order", "place", "p", "BTC/USDT", "buy", "0.5").exit_code == 3
    assert cli.json("order", "place", "p", "BTC/USDT", "sell", "0.5")["status"] == "FILLED"
    liquidated = cli.json("stop", "--all", "--reason", "close everything", "--liquidate")
    assert liquidated["positions_liquidated"] == 1 and liquidated["affected_accounts"] == 1
    text = cli("state")
    assert "installation: HALTED" in text.output
    assert cli.json("resume", "--all", "--by", "erin")["state"] == "ACTIVE"
