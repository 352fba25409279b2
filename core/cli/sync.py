"""``tradeguard sync [ACCOUNT | --all]``: pull balances, positions and orders from the venues.

One summary line per account (``--json``: one object per account). With
``--all`` on a terminal a progress bar shows accounts as they finish; when
stdout is not a terminal each account's line is printed as it finishes.
Exit code 1 when any account failed -- after every other account was synced.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from tradeguard.cli.output import CliState, emit_json, fail, json_option, pass_state
from tradeguard.errors import EXIT_BAD_INPUT, EXIT_RUNTIME


@click.command("sync")
@click.argument("account", required=False)
@click.option("--all", "all_", is_flag=True, help="Sync every account (concurrently).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None, metavar="N",
              help="Accounts synced at once (default 32).")
@json_option
@pass_state
def sync(state: CliState, account: str | None, all_: bool, concurrency: int | None) -> None:
    """Sync ACCOUNT (or --all accounts) with the venue: balances, positions, open orders, fills."""
    if bool(account) == bool(all_):
        fail("give one ACCOUNT or --all", EXIT_BAD_INPUT)
    engine = state.engine()
    if account is not None:
        engine.accounts.get(account)  # unknown account: exit 2 before anything runs
        names = [account]
    else:
        names = engine.syncer.account_names()
        if not names:
            if state.json:
                emit_json([])
            else:
                click.echo("no accounts to sync")
            return
    results = _run(engine, account, names, concurrency, json_mode=state.json)
    failed = [r for r in results if not r.ok]
    if state.json:
        emit_json([r.to_dict() for r in results])
    elif len(results) > 1:
        click.echo(f"synced {len(results) - len(failed)} of {len(results)} accounts"
                   + (f"; failed: {', '.join(r.account for r in failed)}" if failed else ""))
    if failed:
        click.echo(f"error: sync failed for {len(failed)} account(s): {', '.join(r.account for r in failed)}", err=True)
        sys.exit(EXIT_RUNTIME)


def _run(engine: Any, account: str | None, names: list[str], concurrency: int | None, *, json_mode: bool) -> list[Any]:
    """Sync with a progress display on a terminal, plain lines otherwise."""
    tty = stdout_is_tty() and not json_mode
    if json_mode:
        return engine.sync(account, source="cli", concurrency=concurrency)
    if not tty or len(names) == 1:
        lock = threading.Lock()

        def print_line(result: Any) -> None:
            with lock:
                click.echo(result.summary())

        return engine.sync(account, source="cli", concurrency=concurrency, on_result=print_line)
    return _run_with_progress(engine, names, concurrency)


def stdout_is_tty() -> bool:
    """Whether stdout is a terminal (the progress display), else plain lines."""
    return sys.stdout.isatty()


def _run_with_progress(engine: Any, names: list[str], concurrency: int | None) -> list[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    lock = threading.Lock()
    with Progress(TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=False) as progress:
        task = progress.add_task("sync", total=len(names), last="")

        def on_result(result: Any) -> None:
            with lock:
                progress.console.print(result.summary(), style=None if result.ok else "red", markup=False,
                                       highlight=False)
                progress.update(task, advance=1, last=result.account)

        return engine.sync(None, source="cli", concurrency=concurrency, on_result=on_result)


def attach(cli: click.Group) -> None:
    cli.add_command(sync)
