"""``tradeguard db``: schema migrations, status, development seed data, clearing."""

from __future__ import annotations

import click

from tradeguard.cli.output import CliState, emit_json, fail, json_option, pass_state, table
from tradeguard.errors import EXIT_BAD_INPUT
from tradeguard.storage import migrations, use_database


@click.group()
def db() -> None:
    """Database schema and data."""


@db.command()
@click.option("--to", "target", type=int, default=None, help="Stop at this schema version (default: newest).")
@json_option
@pass_state
def migrate(state: CliState, target: int | None) -> None:
    """Apply pending migrations."""
    engine = state.engine(check_schema=False)
    from tradeguard.backup.premigration import backup_before_migration

    saved = backup_before_migration(engine, target)  # an existing database is backed up first
    if saved and not state.json:
        click.echo(f"backed up before migrating ({saved['kind']}): {saved['where']}")
    with use_database(engine.db):
        before = migrations.current(engine.db)
        applied = migrations.upgrade(engine.db, target)
        after = migrations.current(engine.db)
    if state.json:
        emit_json({"from": before, "to": after, "applied": [m.version for m in applied], "backup": saved})
    elif applied:
        for m in applied:
            click.echo(f"applied {m.version:04d} {m.name}")
        click.echo(f"schema version {after}")
    else:
        click.echo(f"up to date (schema version {after})")


@db.command()
@click.option("--to", "target", type=int, required=True, help="Schema version to go back to (0 drops every table).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def downgrade(state: CliState, target: int, yes: bool) -> None:
    """Revert migrations newer than --to (may drop data)."""
    engine = state.engine(check_schema=False)
    if not yes and not click.confirm(f"Revert the schema to version {target}? Data in dropped tables is lost", default=False):
        fail("not confirmed; nothing changed", EXIT_BAD_INPUT)
    with use_database(engine.db):
        reverted = migrations.downgrade(engine.db, target)
        after = migrations.current(engine.db)
    if state.json:
        emit_json({"to": after, "reverted": [m.version for m in reverted]})
    else:
        for m in reverted:
            click.echo(f"reverted {m.version:04d} {m.name}")
        click.echo(f"schema version {after}")


@db.command()
@json_option
@pass_state
def status(state: CliState) -> None:
    """Show applied and pending migrations."""
    engine = state.engine(check_schema=False)
    with use_database(engine.db):
        done = {row.version: row for row in migrations.applied(engine.db)}
        rows = [
            {
                "version": m.version,
                "name": m.name,
                "applied": m.version in done,
                "applied_at": done[m.version].applied_at.isoformat() if m.version in done else None,
            }
            for m in migrations.available()
        ]
        current = migrations.current(engine.db)
    if state.json:
        emit_json({"current": current, "head": migrations.head(), "backend": engine.backend, "migrations": rows})
    else:
        table(rows, ["version", "name", "applied", "applied_at"])
        click.echo(f"current {current}, head {migrations.head()} ({engine.backend})")


@db.command()
@click.option("--force", is_flag=True, help="Re-create the seed rows even if present.")
@json_option
@pass_state
def seed(state: CliState, force: bool) -> None:
    """Add development data: a paper account and a little history (idempotent)."""
    from tradeguard.seed import seed_development

    engine = state.engine()
    result = seed_development(engine, force=force)
    if state.json:
        emit_json(result)
    else:
        click.echo(f"seeded: account {result['account']} ({result['created']})")


@db.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def clear(state: CliState, yes: bool) -> None:
    """Delete all data (accounts, orders, audit log …); keep the schema and vault keys."""
    from tradeguard.seed import clear_data

    engine = state.engine()
    if not yes and not click.confirm(f"Delete ALL data in {engine.backend} database? This cannot be undone", default=False):
        fail("not confirmed; nothing changed", EXIT_BAD_INPUT)
    counts = clear_data(engine)
    if state.json:
        emit_json({"deleted": counts})
    else:
        click.echo(f"cleared {sum(counts.values())} rows from {len([c for c in counts.values() if c])} tables")


def attach(cli: click.Group) -> None:
    cli.add_command(db)
