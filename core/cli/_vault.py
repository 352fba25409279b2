"""CLI plumbing for commands that need the master key or read secrets.

Secrets and keys come from a hidden prompt (only on a terminal), stdin, an
environment variable or a key file — never from argv.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from tradeguard.cli.output import CliState
from tradeguard.errors import ValidationError, VaultLocked

ACTOR = "cli"
NEW_KEY_ENV = "TRADEGUARD_NEW_MASTER_KEY"


def interactive() -> bool:
    """Can we prompt (stdin is a terminal)?"""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def unlocked_engine(state: CliState) -> Any:
    """The Engine with its vault unlocked: from the settings, else a hidden prompt on a terminal."""
    engine = state.engine()
    if engine.vault.locked:
        if not interactive():
            raise VaultLocked("this command needs the master key: set TRADEGUARD_MASTER_KEY or "
                              "TRADEGUARD_MASTER_KEY_FILE, pass --master-key-file PATH, or run it in a terminal")
        new = not engine.vault.initialised()
        if new:
            click.echo("This installation has no master key yet. Choose a passphrase (8 characters or more);"
                       " it cannot be recovered if lost.", err=True)
        value = click.prompt("New master passphrase" if new else "Master passphrase", hide_input=True,
                             confirmation_prompt=new, err=True)
        engine.vault.unlock(value, actor=ACTOR)
    return engine


def new_master_key(key_file: str | None) -> Any:
    """The new master key for rotation: --new-key-file, TRADEGUARD_NEW_MASTER_KEY, or a prompt."""
    from pathlib import Path

    if key_file:
        return Path(os.path.expanduser(key_file))
    value = os.environ.get(NEW_KEY_ENV)
    if value:
        return value
    if interactive():
        return click.prompt("New master passphrase", hide_input=True, confirmation_prompt=True, err=True)
    raise ValidationError(f"give the new master key: --new-key-file PATH, {NEW_KEY_ENV}, or run in a terminal to be prompted")
