"""``tradeguard backup``: create, list, verify, restore and prune encrypted backups.

``list``, ``verify`` and ``restore --to`` work from the target and the master
key alone, so a lost database can be restored on a new machine.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

import click

from tradeguard.cli.output import CliState, emit_json, fail, json_option, key_values, pass_state, table
from tradeguard.errors import EXIT_BAD_INPUT
from tradeguard.storage import sqlite_path

target_option = click.option("--target", "target", metavar="URL",
                             help="Backup target (default: setting backup_target, else file://HOME/backups).")


@click.group()
def backup() -> None:
    """Encrypted, verified backups of the database."""


# -- helpers ----------------------------------------------------------------------------------


def _master_key(state: CliState, *, prompt: bool = True) -> Any:
    """The master key from TRADEGUARD_MASTER_KEY / master_key_file, else a hidden prompt on a terminal."""
    from tradeguard.vault.keys import master_key_from_settings

    key = master_key_from_settings(state.settings)
    if key is None and prompt and sys.stdin.isatty():
        key = click.prompt("Master passphrase", hide_input=True, err=True) or None
    return key


def _database_exists(state: CliState) -> bool:
    path = sqlite_path(state.settings.effective_database_url)
    return path is None or path.exists()


def _standalone_target(state: CliState, url: str | None) -> Any:
    """A target opened without the database (plugins from the settings)."""
    from tradeguard.backup.targets import default_target_url, open_target
    from tradeguard.plugin_manager import PluginManager

    settings = state.settings
    allow = [p.strip() for p in settings.plugins.split(",") if p.strip()] if settings.plugins else None
    plugins = PluginManager(load_entrypoints=not settings.disable_plugins, allow=allow)
    return open_target(plugins, url or default_target_url(settings))


@contextlib.contextmanager
def _progress(state: CliState) -> Iterator[Callable[[str, int, Any], None] | None]:
    """A rich progress bar (bytes, rate) on a terminal; None otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    labels = {"snapshot": "snapshot", "backup": "compress+encrypt", "verify": "decrypt+check"}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: Any) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _report(result: dict[str, Any], state: CliState, headline: str) -> None:
    if state.json:
        emit_json(result)
        return
    click.echo(headline)
    checks = result.get("checks") or {}
    key_values([("id", result["id"]), ("created", result.get("created_at")), ("database", result.get("db_kind")),
                ("schema version", result.get("schema_version")), ("snapshot", _size(result.get("snapshot_size"))),
                ("stored", _size(result.get("size"))), ("audit head", f"{result.get('audit_seq')} {str(result.get('audit_head'))[:16]}…"),
                *[(f"check {k}", v) for k, v in checks.items() if k not in ("audit_head", "audit_seq")],
                *([("restored to", result["restored_to"])] if result.get("restored_to") else [])])


# -- commands ---------------------------------------------------------------------------------


@backup.command()
@target_option
@json_option
@pass_state
def create(state: CliState, target: str | None) -> None:
    """Back up the database (consistent while bots keep running); needs the master key."""
    engine = state.engine()
    with _progress(state) as progress:
        result = engine.backups.create(target, progress=progress)
    if state.json:
        emit_json(result)
    else:
        click.echo(f"backed up to {result['target']}: {result['id']} ({_size(result['snapshot_size'])} -> {_size(result['size'])})")


@backup.command(name="list")
@target_option
@json_option
@pass_state
def list_(state: CliState, target: str | None) -> None:
    """Backups on the target (read from the target itself; the database is not needed)."""
    if _database_exists(state):
        rows = state.engine(check_schema=False).backups.list(target)
    else:
        from tradeguard.backup.pipeline import list_backups

        rows = list_backups(_standalone_target(state, target), _master_key(state, prompt=False))
    if state.json:
        emit_json(rows)
        return
    shown = [{**r, "size": _size(r.get("size")), "verified": bool(r.get("verified_at"))} for r in rows]
    table(shown, ["id", "status", "created_at", "db_kind", "size", "verified", "reason"])


@backup.command()
@click.argument("backup_id")
@target_option
@json_option
@pass_state
def verify(state: CliState, backup_id: str, target: str | None) -> None:
    """Decrypt and check a backup end to end (exit 4 on any integrity failure)."""
    with _progress(state) as progress:
        if _database_exists(state):
            result = state.engine(check_schema=False).backups.verify(backup_id, target, progress=progress)
        else:
            from tradeguard.backup.pipeline import work_dir
            from tradeguard.backup.restore import verify_into

            with work_dir(state.settings.home_path) as work:
                result = verify_into(_standalone_target(state, target), backup_id, _master_key(state), work,
                                     progress=progress).report
    _report(result, state, "backup verified")


@backup.command()
@click.argument("backup_id")
@click.option("--to", "to", metavar="PATH|URL", help="Restore into a new SQLite file or an empty postgresql:// database.")
@click.option("--in-place", is_flag=True, help="Replace this installation's database (the current one is moved aside until the restore succeeds).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (--in-place).")
@target_option
@json_option
@pass_state
def restore(state: CliState, backup_id: str, to: str | None, in_place: bool, yes: bool, target: str | None) -> None:
    """Verify a backup, then restore it --to PATH or --in-place."""
    if bool(to) == in_place:
        fail("give exactly one of --to PATH and --in-place", EXIT_BAD_INPUT)
    with _progress(state) as progress:
        if to:
            from tradeguard.backup import restore_to

            result = restore_to(_standalone_target(state, target), backup_id, _master_key(state), to, progress=progress,
                                work_near=state.settings.home_path)
        else:
            if not yes and not click.confirm("Replace the current database with this backup?", default=False, err=True):
                fail("not confirmed; nothing changed", EXIT_BAD_INPUT)
            result = state.engine(check_schema=False).backups.restore(backup_id, in_place=True, target=target, progress=progress)
    _report(result, state, f"restored {result['id']} to {result['restored_to']}")


@backup.command()
@click.option("--keep-last", type=click.IntRange(min=0), default=0, help="Keep the N newest backups.")
@click.option("--keep-daily", type=click.IntRange(min=0), default=0, help="Keep the newest backup of each of the last D days with one.")
@click.option("--keep-weekly", type=click.IntRange(min=0), default=0, help="Keep the newest backup of each of the last W weeks with one.")
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@target_option
@json_option
@pass_state
def prune(state: CliState, keep_last: int, keep_daily: int, keep_weekly: int, dry_run: bool, target: str | None) -> None:
    """Delete backups outside the retention policy (never the newest verified one)."""
    result = state.engine().backups.prune(keep_last, keep_daily, keep_weekly, dry_run=dry_run, target=target)
    if state.json:
        emit_json(result)
        return
    verb = "would remove" if dry_run else "removed"
    for item in result["keep"]:
        click.echo(f"keep    {item['id']}  ({', '.join(item['reasons'])})")
    for backup_id in result["remove"]:
        click.echo(f"{verb:7} {backup_id}")
    click.echo(f"{len(result['keep'])} kept, {len(result['remove'])} {verb}")


def attach(cli: click.Group) -> None:
    cli.add_command(backup)
