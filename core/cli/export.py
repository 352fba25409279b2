"""``tradeguard export``: a table as CSV or JSON Lines, streamed."""

from __future__ import annotations

import os
import sys

import click

from tradeguard.cli.output import CliState, fail, pass_state
from tradeguard.errors import EXIT_BAD_INPUT
from tradeguard.export import FORMATS, TABLES
from tradeguard.reporting import check_window, parse_time


@click.command()
@click.argument("table", type=click.Choice(list(TABLES)))
@click.option("--format", "format_", type=click.Choice(FORMATS), default="csv", show_default=True,
              help="csv (with a header row) or jsonl (one JSON object per line).")
@click.option("--since", metavar="TIME", help="Rows at or after TIME (ISO date or time, UTC, or a duration ago: 7d, 12h).")
@click.option("--until", metavar="TIME", help="Rows before TIME.")
@click.option("--account", metavar="NAME", help="Only this account's rows.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write to FILE (created 0600) instead of stdout.")
@pass_state
def export(state: CliState, table: str, format_: str, since: str | None, until: str | None, account: str | None,
           output: str | None) -> None:
    """Export TABLE (orders, trades, positions, risk-log, sync-log, emergency-events, cash-flows) with exact
    Decimals and UTC ISO timestamps, oldest first, in constant memory."""
    engine = state.engine()
    if output is None:
        engine.reports.export(table, sys.stdout, format=format_, since=since, until=until, account=account)
        return
    # validate before the file is created, so bad input leaves nothing behind
    check_window(parse_time(since, "since"), parse_time(until, "until"))
    if account:
        engine.accounts.get(account, include_archived=True)
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        fail(f"--output: cannot write {output}: {exc.strerror}", EXIT_BAD_INPUT)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        count = engine.reports.export(table, out, format=format_, since=since, until=until, account=account)
    click.echo(f"exported {count} {table} rows to {output}", err=True)


def attach(cli: click.Group) -> None:
    cli.add_command(export)
