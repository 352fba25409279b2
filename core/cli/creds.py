"""``tradeguard creds``: store, check, rotate and remove encrypted credentials.

Secrets are read from a hidden prompt (on a terminal), ``--stdin`` or
``--from-env VAR`` — never from the command line, where ``ps`` and shell
history would show them. Output shows only masked values (``abcd…wxyz``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from tradeguard.cli._vault import ACTOR, interactive, new_master_key, unlocked_engine
from tradeguard.cli.output import CliState, emit_json, fail, json_option, key_values, pass_state, table
from tradeguard.errors import EXIT_RUNTIME, TradeguardError, ValidationError


@click.group()
def creds() -> None:
    """Encrypted credentials and the vault's keys."""


def _read_values(fields: list[str], from_env: tuple[str, ...], use_stdin: bool, account: str) -> dict[str, str]:
    """Collect secret values from env vars, stdin or hidden prompts (never argv)."""
    if from_env and use_stdin:
        raise ValidationError("use either --from-env or --stdin, not both")
    if from_env:
        values: dict[str, str] = {}
        for item in from_env:
            if "=" in item:
                field, var = item.split("=", 1)
            elif len(fields) == 1:
                field, var = fields[0], item
            else:
                raise ValidationError(f"--from-env {item}: write FIELD=VAR when setting several fields ({', '.join(fields)})")
            value = os.environ.get(var)
            if not value:
                raise ValidationError(f"environment variable {var} is not set or empty")
            values[field.strip()] = value
        return values
    if use_stdin:
        text = sys.stdin.read()
        if len(fields) == 1:
            return {fields[0]: text.strip()}
        values = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise ValidationError(f"stdin line {number}: expected FIELD=VALUE")
            field, value = line.split("=", 1)
            values[field.strip()] = value
        return values
    if not interactive():
        raise ValidationError("no terminal to prompt on: pass the secret with --stdin or --from-env VAR")
    return {field: click.prompt(f"{field} for {account}", hide_input=True, err=True) for field in fields}


@creds.command("set")
@click.argument("account")
@click.argument("fields", nargs=-1)
@click.option("--from-env", multiple=True, metavar="[FIELD=]VAR", help="Read a secret from environment variable VAR.")
@click.option("--stdin", "use_stdin", is_flag=True,
              help="Read the secret from stdin (one field), or FIELD=VALUE lines (several).")
@json_option
@pass_state
def creds_set(state: CliState, account: str, fields: tuple[str, ...], from_env: tuple[str, ...], use_stdin: bool) -> None:
    """Store ACCOUNT's secrets encrypted (default fields: those its venue declares).

    \b
    tradeguard creds set main                      # hidden prompts
    tradeguard creds set main api_key --stdin < key.txt
    tradeguard creds set main --from-env api_key=BINANCE_KEY --from-env api_secret=BINANCE_SECRET
    """
    engine = state.engine()
    engine.accounts.get(account)  # a typo fails before any prompt
    wanted = list(fields) or engine.vault.default_fields(account)
    engine = unlocked_engine(state)
    values = _read_values(wanted, from_env, use_stdin, account)
    stored = engine.vault.set_credentials(account, values, actor=ACTOR)
    drop = getattr(engine, "drop_adapters", None)
    if drop is not None:
        drop(account)
    key_id = engine.vault.credential_fields(account)[0]["key_id"]
    if state.json:
        emit_json({"account": account, "fields": stored, "key_id": key_id})
    else:
        click.echo(f"stored {', '.join(stored)} for account {account} (encrypted with key {key_id})")


@creds.command("check")
@click.argument("account")
@json_option
@pass_state
def creds_check(state: CliState, account: str) -> None:
    """Decrypt ACCOUNT's secrets and, for an authenticating venue, make one cheap authenticated call."""
    engine = unlocked_engine(state)
    masked = engine.vault.check(account, actor=ACTOR)
    venue = engine.accounts.get(account).exchange
    result = {"account": account, "fields": masked, "venue": venue, "venue_check": "skipped", "detail": ""}
    if engine.vault.venue_authenticates(account) and hasattr(engine, "exchange_for"):
        try:
            adapter = engine.exchange_for(account)
            adapter.fetch_balance()
        except TradeguardError as exc:
            engine.vault.mark_tested(account, False)
            result.update(venue_check="failed", detail=str(exc))
        else:
            engine.vault.mark_tested(account, True)
            result.update(venue_check="ok", detail="authenticated fetch_balance succeeded")
    else:
        result["detail"] = f"{venue} does not authenticate: decrypt-only check"
    if state.json:
        emit_json(result)
    else:
        key_values(list(masked.items()))
        status = {"ok": "ok", "failed": "FAILED", "skipped": "decrypt-only"}[result["venue_check"]]
        click.echo(f"venue check: {status} ({result['detail']})")
    if result["venue_check"] == "failed":
        fail(f"{venue} refused the credentials of account {account}: {result['detail']}", EXIT_RUNTIME)


@creds.command("remove")
@click.argument("account")
@click.argument("fields", nargs=-1)
@json_option
@pass_state
def creds_remove(state: CliState, account: str, fields: tuple[str, ...]) -> None:
    """Delete ACCOUNT's stored secrets (all, or only FIELDS). Needs no master key."""
    engine = state.engine()
    removed = engine.vault.remove_credentials(account, fields, actor=ACTOR)
    drop = getattr(engine, "drop_adapters", None)
    if drop is not None:
        drop(account)
    if state.json:
        emit_json({"account": account, "removed": removed})
    else:
        click.echo(f"removed {', '.join(removed)} from account {account}")


@creds.command("rotate-key")
@click.option("--data-keys", is_flag=True, help="Also replace the data keys and re-encrypt every secret.")
@click.option("--keep-master-key", is_flag=True, help="With --data-keys: keep the current master key.")
@click.option("--new-key-file", metavar="PATH", help="The new master key file (see `creds init-key-file`).")
@json_option
@pass_state
def creds_rotate_key(state: CliState, data_keys: bool, keep_master_key: bool, new_key_file: str | None) -> None:
    """Change the master key (re-wraps the data keys); --data-keys also re-encrypts every secret.

    The new key comes from --new-key-file, TRADEGUARD_NEW_MASTER_KEY (a
    passphrase or base64:KEY) or a prompt. An interrupted rotation leaves every
    secret readable; run the same command again to finish it.
    """
    if keep_master_key and not data_keys:
        raise ValidationError("--keep-master-key only makes sense with --data-keys")
    if keep_master_key and new_key_file:
        raise ValidationError("--keep-master-key and --new-key-file contradict each other")
    engine = unlocked_engine(state)
    new_key = None if keep_master_key else new_master_key(new_key_file)
    result = engine.vault.rotate(new_key, data_keys=data_keys, actor=ACTOR)
    if state.json:
        emit_json(result)
        return
    if data_keys:
        verb = "finished the interrupted rotation" if result["resumed"] else "new data keys"
        click.echo(f"{verb}: {result['reencrypted']} secrets re-encrypted with {result['credentials_key_id']}")
    if "master_key_id" in result:
        click.echo(f"master key {result['old_master_key_id']} -> {result['master_key_id']}: "
                   f"{result['rewrapped']} data keys re-wrapped")
        click.echo("update TRADEGUARD_MASTER_KEY / master_key_file: the old master key no longer opens this vault",
                   err=True)


@creds.command("init-key-file")
@click.argument("path")
def creds_init_key_file(path: str) -> None:
    """Create a new 32-byte master key file (mode 0600; never overwrites)."""
    from tradeguard.vault.keys import create_key_file

    target = Path(os.path.expanduser(path))
    create_key_file(target)
    click.echo(f"created {target} (32 random bytes, mode 0600)")
    click.echo(f"use it with --master-key-file {target} or master_key_file in config.toml; keep a copy offline:"
               " without it the secrets and backups cannot be decrypted", err=True)


@creds.command("status")
@json_option
@pass_state
def creds_status(state: CliState) -> None:
    """The vault: master key id and KDF, data keys (retired ones too) and what uses them."""
    info = state.engine().vault.status()
    if state.json:
        emit_json(info)
        return
    if not info["initialised"]:
        click.echo("vault not initialised: the first master key given (creds set, TRADEGUARD_MASTER_KEY) creates it")
        return
    kdf = info["kdf"]["algorithm"] if info["kdf"] else "none (raw key)"
    key_values([("master key", info["master_key_id"]), ("kind", info["master_kind"]), ("kdf", kdf),
                ("state", "locked" if info["locked"] else "unlocked")])
    table(info["data_keys"], ["key_id", "purpose", "created_at", "retired_at", "credentials"])


def attach(cli: click.Group) -> None:
    cli.add_command(creds)
