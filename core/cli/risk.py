"""``tradeguard risk``: rules, enable, disable, set, log."""

from __future__ import annotations

import click

from tradeguard.cli.order import cli_actor, parse_since
from tradeguard.cli.output import CliState, emit_json, json_option, pass_state, table
from tradeguard.errors import ValidationError


@click.group()
def risk() -> None:
    """Risk rules per account, and the risk log."""


@risk.command("rules")
@click.argument("account", required=False)
@json_option
@pass_state
def risk_rules(state: CliState, account: str | None) -> None:
    """Every rule with its switch, settings and source plugin (for ACCOUNT, or the defaults)."""
    rows = state.engine().risk.rules(account)
    if state.json:
        emit_json(rows)
        return
    for row in rows:
        row["settings_text"] = ", ".join(f"{k}={v}" for k, v in row["settings"].items()) or "-"
        row["on"] = ("always" if row["mandatory"] else "yes") if row["enabled"] else "no"
    table(rows, ["rule", "on", "plugin", "settings_text", "description"])


def _switch(state: CliState, account: str, rules: tuple[str, ...], enabled: bool, by: str | None) -> None:
    engine = state.engine()
    results = []
    for rule in rules:
        method = engine.risk.enable if enabled else engine.risk.disable
        results.append(method(account, rule, actor=cli_actor(by)))
    if state.json:
        emit_json(results)
    else:
        for row in results:
            click.echo(f"{row['rule']}: {'enabled' if row['enabled'] else 'disabled'} on {account}")


@risk.command("enable")
@click.argument("account")
@click.argument("rules", nargs=-1, required=True)
@click.option("--by", help="Who (audited).")
@json_option
@pass_state
def risk_enable(state: CliState, account: str, rules: tuple[str, ...], by: str | None) -> None:
    """Enable RULES for ACCOUNT."""
    _switch(state, account, rules, True, by)


@risk.command("disable")
@click.argument("account")
@click.argument("rules", nargs=-1, required=True)
@click.option("--by", help="Who (audited).")
@json_option
@pass_state
def risk_disable(state: CliState, account: str, rules: tuple[str, ...], by: str | None) -> None:
    """Disable RULES for ACCOUNT (mandatory rules refuse)."""
    _switch(state, account, rules, False, by)


@risk.command("set")
@click.argument("account")
@click.argument("rule")
@click.argument("values", nargs=-1, required=True)
@click.option("--by", help="Who (audited).")
@json_option
@pass_state
def risk_set(state: CliState, account: str, rule: str, values: tuple[str, ...], by: str | None) -> None:
    """Set RULE's settings for ACCOUNT: key=value … (checked against the rule's schema)."""
    parsed = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"expected key=value, got {item!r}")
        parsed[key.strip()] = value.strip()
    row = state.engine().risk.set(account, rule, parsed, actor=cli_actor(by))
    if state.json:
        emit_json(row)
    else:
        click.echo(f"{rule} on {account}: " + ", ".join(f"{k}={v}" for k, v in row["settings"].items()))


@risk.command("log")
@click.argument("account", required=False)
@click.option("--since", help="An ISO time or a duration ago (30m, 2h, 7d).")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100000))
@json_option
@pass_state
def risk_log(state: CliState, account: str | None, since: str | None, limit: int) -> None:
    """Blocks, confirmations and warnings, newest first."""
    rows = state.engine().risk.log(account, since=parse_since(since), limit=limit)
    if state.json:
        emit_json(rows)
    else:
        table(rows, ["created_at", "account", "rule", "event_type", "severity", "order", "message"], empty="no risk events")


def attach(cli: click.Group) -> None:
    cli.add_command(risk)
