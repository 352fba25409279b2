"""The ``tradeguard`` command line: one group per noun.

Every module in this package that defines ``attach(cli)`` adds its commands;
plugins add theirs through the ``register_commands`` hook. Errors become one
line on stderr and the exit code of `tradeguard.errors` (a traceback only
with ``--debug``).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import traceback
from typing import Any

import click

from tradeguard import __version__
from tradeguard.cli.output import CliState, fail
from tradeguard.errors import EXIT_RUNTIME, TradeguardError
from tradeguard.logs import configure_logging


class RootGroup(click.Group):
    """Turns tradeguard errors into one line and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except TradeguardError as exc:
            if _debug(ctx):
                traceback.print_exc()
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a bug: say so in one line, traceback with --debug
            if _debug(ctx):
                traceback.print_exc()
            first = (str(exc).splitlines() or [""])[0]
            fail(f"unexpected {type(exc).__name__}: {first} (run with --debug for the traceback)", EXIT_RUNTIME)


def _debug(ctx: click.Context) -> bool:
    state = ctx.find_object(CliState)
    return bool(state and state.debug)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="tradeguard")
@click.option("--db", "database_url", metavar="URL", help="Database URL (default: sqlite:///HOME/tradeguard.db).")
@click.option("--home", metavar="DIR", help="tradeguard home (default: $TRADEGUARD_HOME or ~/.tradeguard).")
@click.option("--config", "config_file", metavar="FILE", help="Configuration file (default: HOME/config.toml).")
@click.option("json_", "--json", is_flag=True, help="Print JSON on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="stderr log format.")
@click.option("--no-plugins", is_flag=True, help="Load no third-party plugins.")
@click.option("--master-key-file", metavar="PATH", help="32-byte master key file (default: setting master_key_file).")
@click.pass_context
def cli(ctx: click.Context, database_url, home, config_file, json_, debug, log_format, no_plugins, master_key_file) -> None:
    """tradeguard: risk limits, durable orders, an encrypted vault and an audit trail for trading bots."""
    state = CliState(
        options={"database_url": database_url, "home": home, "log_format": log_format,
                 "disable_plugins": True if no_plugins else None, "master_key_file": master_key_file},
        config_file=config_file,
        json=json_,
        debug=debug,
    )
    ctx.obj = state
    ctx.call_on_close(state.close)
    try:
        settings = state.settings
    except TradeguardError as exc:
        fail(str(exc), exc.exit_code)
    configure_logging(settings.log_format, "DEBUG" if debug else settings.log_level)


def _attach_builtin_commands() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "output":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        attach = getattr(module, "attach", None)
        if attach is not None:
            attach(cli)


_attach_builtin_commands()


def _attach_plugin_commands(argv: list[str]) -> None:
    """Let installed plugins add commands (skipped with --no-plugins)."""
    from tradeguard.config import load_settings
    from tradeguard.plugin_manager import PluginManager

    try:
        settings = load_settings()
        if "--no-plugins" in argv or settings.disable_plugins:
            return
        allow = [p.strip() for p in settings.plugins.split(",") if p.strip()] if settings.plugins else None
        PluginManager(allow=allow).add_commands(cli)
    except Exception as exc:  # the CLI must still start; `tradeguard plugins` shows the error
        logging.getLogger("tradeguard.plugins").warning("plugin commands not loaded: %s", exc)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    _attach_plugin_commands(argv)
    cli.main(args=argv, prog_name="tradeguard")
