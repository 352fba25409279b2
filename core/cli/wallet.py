"""``tradeguard wallet``: on-chain wallets of accounts (the ``evm`` plugin).

Private keys and keystore passwords are read from a hidden prompt (on a
terminal), ``--stdin`` or an environment variable — never from argv. No
command prints a private key.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from tradeguard.cli._vault import ACTOR, interactive, unlocked_engine
from tradeguard.cli.output import CliState, emit_json, fail, json_option, key_values, pass_state, table
from tradeguard.errors import EXIT_BAD_INPUT, EXIT_NOT_SENT, OrderNotSent, ValidationError

NETWORK_HELP = ("ethereum, sepolia, polygon, amoy, bsc, bsc-testnet, arbitrum, base, optimism, or custom "
                "(with --chain-id and --rpc-url)")


@click.group()
def wallet() -> None:
    """On-chain wallets: keys, balances, transfers, signatures."""


def _secret(what: str, *, use_stdin: bool, env_var: str | None, confirm: bool = False) -> str:
    """A secret from --stdin, an environment variable or a hidden prompt (never argv)."""
    if use_stdin and env_var:
        raise ValidationError("use either --stdin or an environment variable, not both")
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise ValidationError(f"environment variable {env_var} is not set or empty")
        return value.strip()
    if use_stdin:
        value = sys.stdin.readline()
        if not value.strip():
            raise ValidationError(f"no {what} on stdin")
        return value.strip()
    if not interactive():
        raise ValidationError(f"no terminal to prompt for the {what} on: use --stdin or an environment variable")
    return click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=confirm, err=True)


def _network_options(func: Any) -> Any:
    options = [
        click.option("--network", required=True, metavar="NAME", help=f"Network: {NETWORK_HELP}."),
        click.option("--rpc-url", metavar="URL", help="JSON-RPC endpoint (default: $TRADEGUARD_RPC_<NETWORK>)."),
        click.option("--chain-id", type=int, metavar="ID", help="custom network: its chain id."),
        click.option("--native-symbol", metavar="SYM", help="custom network: native coin symbol (default ETH)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _added(state: CliState, info: dict[str, Any], verb: str) -> None:
    if state.json:
        emit_json(info)
        return
    click.echo(f"{verb} wallet {info['address']} on {info['network']} (chain id {info['chain_id']}) "
               f"for account {info['account']}")
    if info.get("generated"):
        click.echo(f"back the key up now: tradeguard wallet export-keystore {info['account']} PATH")


@wallet.command("add")
@click.argument("account")
@_network_options
@click.option("--generate", is_flag=True, help="Create a new random key instead of importing one.")
@click.option("--stdin", "use_stdin", is_flag=True, help="Read the private key (hex) from stdin.")
@click.option("--from-env", "from_env", metavar="VAR", help="Read the private key from environment variable VAR.")
@json_option
@pass_state
def wallet_add(state: CliState, account: str, network: str, rpc_url: str | None, chain_id: int | None,
               native_symbol: str | None, generate: bool, use_stdin: bool, from_env: str | None) -> None:
    """Give ACCOUNT a wallet: import a private key (prompt, --stdin, --from-env) or --generate one.

    \b
    tradeguard wallet add main --network sepolia --generate
    tradeguard wallet add main --network sepolia --stdin < key.txt
    tradeguard wallet add dev --network custom --chain-id 31337 --rpc-url http://127.0.0.1:8545 --from-env DEV_KEY
    """
    engine = unlocked_engine(state)
    engine.accounts.get(account)  # a typo fails before any prompt
    if generate and (use_stdin or from_env):
        raise ValidationError("--generate creates a key: do not pass one with --stdin or --from-env")
    key = None if generate else _secret("private key", use_stdin=use_stdin, env_var=from_env)
    info = engine.wallets.add(account, network, private_key=key, generate=generate, rpc_url=rpc_url,
                              chain_id=chain_id, native_symbol=native_symbol, actor=ACTOR)
    del key
    _added(state, info, "added")


@wallet.command("show")
@click.argument("account")
@json_option
@pass_state
def wallet_show(state: CliState, account: str) -> None:
    """Show ACCOUNT's wallet: address, network, RPC host, signing, limits, open transfers."""
    data = state.engine().wallets.show(account)
    if state.json:
        emit_json(data)
        return
    limits = data.pop("limits")
    key_values([(k, v) for k, v in data.items()] + [
        ("daily_limits", ", ".join(f"{k}={v}" for k, v in limits["daily_limits"].items()) or None),
        ("allowed_destinations", ", ".join(limits["allowed_destinations"]) or None)])


@wallet.command("set")
@click.argument("account")
@click.option("--rpc-url", metavar="URL", help="JSON-RPC endpoint ('default' uses $TRADEGUARD_RPC_<NETWORK>).")
@click.option("--allow-signing/--no-allow-signing", default=None,
              help="Allow signing arbitrary messages and EIP-712 data with this key (off by default).")
@click.option("--token", "tokens", multiple=True, metavar="SYM=ADDRESS", help="Map a token symbol to its contract.")
@click.option("--receipt-timeout", type=int, metavar="SECONDS", help="How long `wallet send` waits for a receipt.")
@json_option
@pass_state
def wallet_set(state: CliState, account: str, rpc_url: str | None, allow_signing: bool | None, tokens: tuple[str, ...],
               receipt_timeout: int | None) -> None:
    """Change ACCOUNT's wallet settings (audited)."""
    token_map = {}
    for item in tokens:
        if "=" not in item:
            raise ValidationError(f"--token {item}: expected SYMBOL=0xADDRESS")
        symbol, address = item.split("=", 1)
        token_map[symbol] = address
    data = state.engine().wallets.set(account, rpc_url=rpc_url, allow_signing=allow_signing,
                                      receipt_timeout=receipt_timeout, tokens=token_map, actor=ACTOR)
    if state.json:
        emit_json(data)
    else:
        click.echo(f"updated wallet of {account}")


@wallet.command("limits")
@click.argument("account")
@click.option("--daily", multiple=True, metavar="ASSET=AMOUNT", help="Most of ASSET sent per UTC day ('ASSET=' removes it).")
@click.option("--allow", multiple=True, metavar="ADDRESS", help="Add a destination to the allow-list.")
@click.option("--disallow", multiple=True, metavar="ADDRESS", help="Remove a destination from the allow-list.")
@click.option("--clear-allow", is_flag=True, help="Empty the allow-list first.")
@json_option
@pass_state
def wallet_limits(state: CliState, account: str, daily: tuple[str, ...], allow: tuple[str, ...],
                  disallow: tuple[str, ...], clear_allow: bool) -> None:
    """Show or change ACCOUNT's transfer limits (rule wallet_transfer_limits).

    Mainnet wallets refuse transfers until the asset has a daily limit and
    the destination is on the allow-list.
    """
    engine = state.engine()
    if daily or allow or disallow or clear_allow:
        limits = {}
        for item in daily:
            if "=" not in item:
                raise ValidationError(f"--daily {item}: expected ASSET=AMOUNT")
            asset, amount = item.split("=", 1)
            limits[asset] = amount.strip()
        data = engine.wallets.set_limits(account, daily=limits, allow=allow, disallow=disallow,
                                         clear_allow=clear_allow, actor=ACTOR)
    else:
        data = engine.wallets.limits(account)
    if state.json:
        emit_json(data)
        return
    key_values([("daily_limits", ", ".join(f"{k}={v}" for k, v in data["daily_limits"].items()) or "none"),
                ("allowed_destinations", ", ".join(data["allowed_destinations"]) or "any (testnet only)")])


@wallet.command("balance")
@click.argument("account")
@click.option("--token", "tokens", multiple=True, metavar="SYMBOL|ADDRESS", help="A token balance (repeatable).")
@json_option
@pass_state
def wallet_balance(state: CliState, account: str, tokens: tuple[str, ...]) -> None:
    """ACCOUNT's native balance, or the --token balances; each recorded as a balance snapshot."""
    engine = state.engine()
    rows = [engine.wallets.balance(account, token) for token in (tokens or (None,))]
    if state.json:
        emit_json(rows if tokens and len(tokens) > 1 else rows[0])
        return
    table(rows, ["asset", "balance", "token", "address", "network"])


@wallet.command("send")
@click.argument("account")
@click.argument("to")
@click.argument("amount")
@click.option("--token", metavar="SYMBOL|ADDRESS", help="Send this ERC-20 token (default: the native coin).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Do not wait for the receipt (`wallet settle` records it later).")
@click.option("--timeout", type=float, metavar="SECONDS", help="How long to wait for the receipt.")
@json_option
@pass_state
def wallet_send(state: CliState, account: str, to: str, amount: str, token: str | None, yes: bool, no_wait: bool,
                timeout: float | None) -> None:
    """Send AMOUNT of the native coin (or --token) from ACCOUNT's wallet to TO.

    The transfer passes the trading state and the account's transfer limits
    (exit 3 if refused), is recorded before it is broadcast, and waits for
    its receipt.
    """
    engine = unlocked_engine(state)
    shown = engine.wallets.show(account)
    if not yes:
        if not interactive():
            fail("not confirmed: pass --yes to send without a prompt", EXIT_BAD_INPUT)
        question = (f"Send {amount} {token or shown['native_symbol']} from {shown['address']} to {to} "
                    f"on {shown['network']}?")
        if not click.confirm(question, default=False, err=True):
            fail("not confirmed; nothing was sent", EXIT_BAD_INPUT)
    try:
        result = engine.wallets.send(account, to, amount, token, actor=ACTOR, wait=not no_wait, timeout=timeout)
    except OrderNotSent as exc:
        if state.json:
            emit_json({"status": exc.status, "error": str(exc), "account": account})
        fail(str(exc), EXIT_NOT_SENT)
    if state.json:
        emit_json(result)
        return
    line = f"{result['status']}: {result['amount']} {result['asset']} to {result['to']}, tx {result['tx_hash']}"
    if result["block_number"] is not None:
        line += f" in block {result['block_number']} (gas {result['gas_used']}, fee {result['fee']} {result['fee_currency']})"
    elif result["status"] == "pending":
        line += f"; no receipt yet: `tradeguard wallet settle {account}` records it once mined"
    click.echo(line)
    if result.get("explorer_url"):
        click.echo(result["explorer_url"])


@wallet.command("settle")
@click.argument("account", required=False)
@click.option("--timeout", type=float, default=0, show_default=True, metavar="SECONDS",
              help="Wait up to this long for each pending receipt.")
@json_option
@pass_state
def wallet_settle(state: CliState, account: str | None, timeout: float) -> None:
    """Find unsettled transfers (of ACCOUNT, or all) by hash and settle them; re-send ones the node lost."""
    rows = state.engine().wallets.settle(account, timeout=timeout, actor=ACTOR)
    if state.json:
        emit_json(rows)
    else:
        table(rows, ["account", "tx_hash", "status", "amount", "asset", "block_number"], empty="nothing to settle")


@wallet.command("transfers")
@click.argument("account")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@pass_state
def wallet_transfers(state: CliState, account: str, limit: int) -> None:
    """ACCOUNT's transfers, newest first."""
    rows = state.engine().wallets.transfers(account, limit=limit)
    if state.json:
        emit_json(rows)
    else:
        table(rows, ["id", "created_at", "status", "amount", "asset", "to", "tx_hash"], empty="no transfers")


@wallet.command("sign")
@click.argument("account")
@click.option("--message", metavar="TEXT", help="Sign TEXT (EIP-191 personal_sign).")
@click.option("--message-stdin", is_flag=True, help="Sign the text read from stdin, less one final newline (EIP-191).")
@click.option("--typed-data", type=click.Path(dir_okay=False), metavar="FILE", help="Sign EIP-712 typed data (JSON file, - for stdin).")
@json_option
@pass_state
def wallet_sign(state: CliState, account: str, message: str | None, message_stdin: bool, typed_data: str | None) -> None:
    """Sign a message or EIP-712 typed data with ACCOUNT's key (needs `wallet set --allow-signing`)."""
    if sum(bool(x) for x in (message is not None, message_stdin, typed_data)) != 1:
        raise ValidationError("give exactly one of --message, --message-stdin or --typed-data")
    engine = unlocked_engine(state)
    if typed_data:
        text = sys.stdin.read() if typed_data == "-" else _read_text(typed_data)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"typed data is not JSON: {exc.msg} (line {exc.lineno})") from None
        result = engine.wallets.sign_typed_data(account, data, actor=ACTOR)
    else:
        text = sys.stdin.read().removesuffix("\n") if message_stdin else message
        result = engine.wallets.sign_message(account, text or "", actor=ACTOR)
    if state.json:
        emit_json(result)
    else:
        click.echo(result["signature"])


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read {path}: {type(exc).__name__}") from None


@wallet.command("export-keystore")
@click.argument("account")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--password-stdin", is_flag=True, help="Read the keystore password from stdin.")
@click.option("--password-env", metavar="VAR", help="Read the keystore password from environment variable VAR.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.option("--light-kdf", is_flag=True, help="Weaker, faster scrypt (n=4096, like geth --lightkdf).")
@json_option
@pass_state
def wallet_export_keystore(state: CliState, account: str, path: str, password_stdin: bool, password_env: str | None,
                           force: bool, light_kdf: bool) -> None:
    """Write ACCOUNT's key to PATH as an encrypted JSON keystore (Web3 Secret Storage, file mode 0600)."""
    engine = unlocked_engine(state)
    engine.wallets.show(account)  # no wallet: fail before the prompt
    password = _secret("keystore password", use_stdin=password_stdin, env_var=password_env, confirm=True)
    info = engine.wallets.export_keystore(account, path, password, overwrite=force, light_kdf=light_kdf, actor=ACTOR)
    if state.json:
        emit_json(info)
    else:
        click.echo(f"wrote the keystore of {info['address']} to {info['path']}")


@wallet.command("import-keystore")
@click.argument("account")
@click.argument("path", type=click.Path(dir_okay=False))
@_network_options
@click.option("--password-stdin", is_flag=True, help="Read the keystore password from stdin.")
@click.option("--password-env", metavar="VAR", help="Read the keystore password from environment variable VAR.")
@json_option
@pass_state
def wallet_import_keystore(state: CliState, account: str, path: str, network: str, rpc_url: str | None,
                           chain_id: int | None, native_symbol: str | None, password_stdin: bool,
                           password_env: str | None) -> None:
    """Give ACCOUNT the wallet in keystore file PATH (as `wallet add`, key from the keystore)."""
    engine = unlocked_engine(state)
    engine.accounts.get(account)
    password = _secret("keystore password", use_stdin=password_stdin, env_var=password_env)
    info = engine.wallets.import_keystore(account, path, password, network, rpc_url=rpc_url, chain_id=chain_id,
                                          native_symbol=native_symbol, actor=ACTOR)
    _added(state, info, "imported")


def attach(cli: click.Group) -> None:
    cli.add_command(wallet)
