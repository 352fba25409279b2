"""``tradeguard replay ACCOUNT``: check the stored books against the fills."""

from __future__ import annotations

import click

from tradeguard.cli.output import CliState, emit_json, fail, json_option, pass_state, table
from tradeguard.errors import EXIT_INTEGRITY
from tradeguard.money import plain


def _text(value) -> str:
    return "-" if value is None else plain(value)


@click.command()
@click.argument("account")
@click.option("--since", metavar="TIME", help="Check the PnL of fills at or after TIME (all fills are replayed).")
@click.option("--until", metavar="TIME",
              help="Replay fills before TIME only (stored positions are then not compared: they are current).")
@json_option
@pass_state
def replay(state: CliState, account: str, since: str | None, until: str | None) -> None:
    """Rebuild positions and PnL of ACCOUNT from its stored fills alone and compare them with
    the stored positions and per-fill PnL. Exits 4 when anything differs."""
    result = state.engine().reports.replay(account, since=since, until=until)
    if state.json:
        emit_json(result.to_dict())
    else:
        rows = [{"symbol": p["symbol"], "market": p["market"], "fills": p["fills"],
                 "quantity": f"{_text(p['quantity']['stored'])} / {_text(p['quantity']['rebuilt'])}",
                 "avg_cost": f"{_text(p['average_cost']['stored'])} / {_text(p['average_cost']['rebuilt'])}",
                 "realized": f"{_text(p['realized_pnl']['stored'])} / {_text(p['realized_pnl']['rebuilt'])}",
                 "status": "ok" if p["ok"] else "DIFFERS"} for p in result.positions]
        if result.positions_compared:
            click.echo("positions (stored / rebuilt from fills):")
            table(rows, ["symbol", "market", "fills", "quantity", "avg_cost", "realized", "status"], empty="(none)")
        for diff in result.differences:
            where = diff.get("exchange_trade_id") or f"{diff['symbol']} {diff['market']}"
            note = diff.get("note") or f"fill at {diff.get('at')}"
            click.echo(f"DIFFERENCE {diff['kind']} {where} {diff['field']}: stored {_text(diff['stored'])}, "
                       f"rebuilt {_text(diff['rebuilt'])} ({note})")
        if result.ok:
            click.echo(f"ok: {result.fills_replayed} fills replayed, {result.fills_checked} checked, "
                       f"{len(result.positions)} positions agree" if result.positions_compared else
                       f"ok: {result.fills_replayed} fills replayed, {result.fills_checked} checked")
    if not result.ok:
        fail(f"replay of {account}: {len(result.differences)} difference(s) between the stored books and the fills",
             EXIT_INTEGRITY)


def attach(cli: click.Group) -> None:
    cli.add_command(replay)
