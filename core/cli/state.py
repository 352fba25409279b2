"""``tradeguard state``, ``stop``, ``reduce``, ``resume``: trading states and emergency stops."""

from __future__ import annotations

import click

from tradeguard.cli.order import cli_actor
from tradeguard.cli.output import CliState, emit_json, fail, json_option, pass_state, table
from tradeguard.errors import EXIT_BAD_INPUT, EXIT_RUNTIME


def _target(account: str | None, all_: bool) -> str | None:
    if bool(account) == bool(all_):
        fail("give an ACCOUNT or --all (not both)", EXIT_BAD_INPUT)
    return account


@click.command("state")
@click.argument("account", required=False)
@json_option
@pass_state
def state_cmd(state: CliState, account: str | None) -> None:
    """Show the trading state (ACTIVE, REDUCING, HALTED) of the installation and the accounts."""
    data = state.engine().trading.status(account)
    if state.json:
        emit_json(data)
        return
    inst = data["installation"]
    click.echo(f"installation: {inst['state']}" + (f" ({inst.get('reason')}, by {inst.get('by')})" if inst.get("reason") else ""))
    table(data["accounts"], ["account", "state", "effective"], empty="no accounts")
    for event in data["open_events"]:
        click.echo(f"open {event['event_type']} #{event['id']} {event['account'] or 'installation'}: {event['reason']} "
                   f"(source {event['source']}, {event['created_at']})")


@click.command("stop")
@click.argument("account", required=False)
@click.option("--all", "all_", is_flag=True, help="Stop every account (the installation).")
@click.option("--reason", required=True, help="Why (recorded).")
@click.option("--liquidate", is_flag=True, help="Also close positions with reduce-only market orders.")
@click.option("--keep-orders", is_flag=True, help="Do not cancel open orders.")
@click.option("--by", help="Who stops (default cli:<login>).")
@json_option
@pass_state
def stop_cmd(state: CliState, account: str | None, all_: bool, reason: str, liquidate: bool, keep_orders: bool,
             by: str | None) -> None:
    """Emergency stop: HALT first, then cancel open orders (and liquidate if asked)."""
    target = _target(account, all_)
    event = state.engine().emergency_stop(target, reason=reason, source=cli_actor(by), cancel_orders=not keep_orders,
                                          liquidate=liquidate)
    if state.json:
        emit_json(event)
    else:
        click.echo(f"HALTED {target or 'installation'}: {event['orders_cancelled']} orders cancelled, "
                   f"{event['orders_cancel_failed']} failed, {event['positions_liquidated']} positions liquidated "
                   f"(impact {event['financial_impact']})")
        for error in event["errors"]:
            click.echo(f"  {error}", err=True)
    if event["orders_cancel_failed"]:
        fail(f"{event['orders_cancel_failed']} order(s) could not be cancelled (trading is HALTED; "
             "reconciliation retries them)", EXIT_RUNTIME)


@click.command("reduce")
@click.argument("account", required=False)
@click.option("--all", "all_", is_flag=True, help="Every account (the installation).")
@click.option("--reason", default="", help="Why (recorded).")
@click.option("--by", help="Who (default cli:<login>).")
@json_option
@pass_state
def reduce_cmd(state: CliState, account: str | None, all_: bool, reason: str, by: str | None) -> None:
    """Set REDUCING: only orders that reduce exposure pass; cancels always pass."""
    target = _target(account, all_)
    event = state.engine().trading.reduce(target, reason=reason, source=cli_actor(by))
    if state.json:
        emit_json(event)
    else:
        click.echo(f"REDUCING {target or 'installation'}")


@click.command("resume")
@click.argument("account", required=False)
@click.option("--all", "all_", is_flag=True, help="Resume the installation.")
@click.option("--by", required=True, help="Who resumes (recorded and audited).")
@click.option("--notes", default="", help="Resolution notes.")
@json_option
@pass_state
def resume_cmd(state: CliState, account: str | None, all_: bool, by: str, notes: str) -> None:
    """Set ACTIVE again and resolve the open emergency events."""
    target = _target(account, all_)
    result = state.engine().resume(target, by=by, notes=notes)
    if state.json:
        emit_json(result)
    else:
        click.echo(f"ACTIVE {target or 'installation'} (resolved {result['resolved_events']} event(s))")


def attach(cli: click.Group) -> None:
    for command in (state_cmd, stop_cmd, reduce_cmd, resume_cmd):
        cli.add_command(command)
