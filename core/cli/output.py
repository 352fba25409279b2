"""Shared CLI plumbing: state, the Engine, JSON and table output, failures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

import click

from tradeguard.config import Settings, load_settings
from tradeguard.storage.fields import dumps


class CliError(click.ClickException):
    """One line on stderr and a tradeguard exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def fail(message: str, exit_code: int) -> None:
    """Stop the command with *message* on stderr and *exit_code*."""
    raise CliError(message, exit_code)


@dataclass
class CliState:
    """What the root group parsed; opens the Engine on first use."""

    options: dict[str, Any]
    config_file: str | None = None
    json: bool = False
    debug: bool = False
    _settings: Settings | None = None
    _engine: Any = None
    _master_key: Any = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(cli=self.options, config_file=self.config_file)
        return self._settings

    def engine(self, *, check_schema: bool = True, master_key: Any = None) -> Any:
        """The Engine for this command (opened once, closed when the command ends)."""
        if self._engine is None:
            from tradeguard.engine import Engine
            from tradeguard.vault.keys import master_key_from_settings

            if master_key is None:  # TRADEGUARD_MASTER_KEY, --master-key-file / master_key_file; never argv
                master_key = master_key_from_settings(self.settings)
            self._engine = Engine.open(settings=self.settings, check_schema=check_schema, master_key=master_key)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


pass_state = click.make_pass_decorator(CliState)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` on a command (the root ``--json`` works too)."""

    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.find_object(CliState).json = True
        return value

    return click.option("--json", "json_flag", is_flag=True, expose_value=False, callback=callback,
                        help="Print JSON on stdout.")(func)


def emit_json(data: Any) -> None:
    """JSON on stdout: Decimals as exact strings, keys sorted."""
    click.echo(json.dumps(json.loads(dumps(data)), indent=2, sort_keys=True))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str = "(none)") -> None:
    """A plain aligned text table on stdout."""
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    click.echo("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        from tradeguard.money import plain

        return plain(value)
    return str(value)


def key_values(pairs: Iterable[tuple[str, Any]]) -> None:
    """``key: value`` lines."""
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {_cell(value)}")
