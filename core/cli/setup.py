"""``tradeguard init`` and ``tradeguard config show``."""

from __future__ import annotations

import click

from tradeguard.cli.output import CliState, emit_json, json_option, pass_state, table
from tradeguard.engine import PROFILES
from tradeguard.storage import redact_url


@click.command()
@click.option("--profile", type=click.Choice(PROFILES), default=None,
              help="development (default for a new installation), test or production.")
@json_option
@pass_state
def init(state: CliState, profile: str | None) -> None:
    """Create the home and the database (migrated to the newest schema)."""
    engine = state.engine()
    if profile is not None or engine.get_setting("profile") is None:
        engine.set_profile(profile or "development")
    from tradeguard.storage import migrations

    info = {
        "database": redact_url(engine.url),
        "backend": engine.backend,
        "profile": engine.profile,
        "schema_version": migrations.current(engine.db),
        "home": str(state.settings.home_path),
    }
    if state.json:
        emit_json(info)
    else:
        click.echo(f"tradeguard ready: {info['database']} (profile {info['profile']}, schema {info['schema_version']})")


@click.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@json_option
@pass_state
def config_show(state: CliState) -> None:
    """Print every setting, its value (secrets masked) and where it came from."""
    rows = state.settings.show()
    if state.json:
        emit_json(rows)
    else:
        table(rows, ["name", "value", "source"])


def attach(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(config)
