"""``tradeguard run`` (a bot under the guard) and ``tradeguard demo``."""

from __future__ import annotations

import click

from tradeguard.cli.output import CliState, emit_json, json_option, pass_state
from tradeguard.durations import parse_duration


@click.command()
@click.argument("bot")
@click.option("--account", required=True, help="Account the bot trades on.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between ticks.")
@click.option("--ticks", type=int, default=None, help="Stop after N ticks (default: run until stopped).")
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip", show_default=True,
              help="When the bot raises: skip the tick, or stop the run.")
@click.option("--backup-every", metavar="DURATION", help="Create backups on this schedule, e.g. 1h.")
@click.option("--keep-backups", type=click.IntRange(1), default=24, show_default=True,
              help="With --backup-every: how many of the newest backups to keep.")
@click.option("--lease-timeout", metavar="DURATION", default="60s", show_default=True,
              help="A runner lease without a heartbeat for this long may be taken over.")
@json_option
@pass_state
def run(state: CliState, bot: str, account: str, interval: float, ticks: int | None, on_error: str,
        backup_every: str | None, keep_backups: int, lease_timeout: str) -> None:
    """Run BOT (module:function or file.py) every tick on ACCOUNT, through the guard."""
    from tradeguard.runner import Runner

    engine = state.engine()
    runner = Runner(engine, bot, account, interval=interval, ticks=ticks, on_error=on_error,
                    lease_timeout=parse_duration(lease_timeout, "--lease-timeout"),
                    backup_every=parse_duration(backup_every, "--backup-every") if backup_every else None,
                    keep_backups=keep_backups,
                    echo=(lambda line: click.echo(line, err=True)) if state.json else click.echo)
    summary = runner.run()
    if state.json:
        emit_json(summary.__dict__)
    else:
        click.echo(summary.line())
    if summary.exit_reason == "bot error":
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--ticks", type=click.IntRange(1, 100000), default=300, show_default=True, help="How many ticks to run.")
@click.option("--keep", "home", metavar="DIR", help="Use (and keep) this home instead of a temporary one.")
@click.option("--verbose", is_flag=True, help="Print the runner's line per tick.")
@json_option
@pass_state
def demo(state: CliState, ticks: int, home: str | None, verbose: bool) -> None:
    """Run the moving-average bot on the paper exchange in a throwaway home; print a summary."""
    from tradeguard.demo import run_demo

    result = run_demo(ticks=ticks, home=home, echo=click.echo, verbose=verbose and not state.json)
    if state.json:
        emit_json(result.__dict__)
    else:
        for line in result.lines():
            click.echo(line)


def attach(cli: click.Group) -> None:
    cli.add_command(run)
    cli.add_command(demo)
