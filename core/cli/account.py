"""``tradeguard account``: add, list, show, set, remove."""

from __future__ import annotations

from typing import Any, Callable

import click

from tradeguard.accounts import account_dict
from tradeguard.cli.output import CliState, emit_json, fail, json_option, key_values, pass_state, table
from tradeguard.errors import EXIT_BAD_INPUT


def limit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The risk-limit options shared by ``account add`` and ``account set``."""
    options = [
        click.option("--max-position-size", metavar="USD", help="Largest position, USD notional (default 1000)."),
        click.option("--max-daily-loss", metavar="USD", help="Largest loss since 00:00 UTC (default 100)."),
        click.option("--max-positions", "max_open_positions", metavar="N", help="Most open positions (default 5)."),
        click.option("--max-leverage", metavar="X", help="Highest leverage (default 1)."),
        click.option("--slippage-tolerance", metavar="FRACTION", help="e.g. 0.005 or 0.5% (default 0.5%)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _limits(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_position_size", "max_daily_loss", "max_open_positions", "max_leverage", "slippage_tolerance")
    return {k: kwargs.pop(k) for k in keys if k in kwargs}


@click.group()
def account() -> None:
    """Trading accounts and their limits."""


@account.command("add")
@click.argument("name")
@click.option("--exchange", required=True, help="Venue plugin name (paper, binance, coinbase …).")
@click.option("--mode", type=click.Choice(["paper", "live"], case_sensitive=False), default="paper", show_default=True)
@click.option("--mainnet", is_flag=True, help="Allow the venue's real network (default: testnet/sandbox only).")
@click.option("--quote-currency", default="USDT", show_default=True, help="Currency the account's cash is in.")
@click.option("--initial-capital", metavar="AMOUNT", help="Starting cash (paper accounts).")
@click.option("--api-base-url", metavar="URL", help="Override the venue's API endpoint.")
@limit_options
@json_option
@pass_state
def account_add(state: CliState, name: str, exchange: str, mode: str, mainnet: bool, quote_currency: str,
                initial_capital: str | None, api_base_url: str | None, **kwargs: Any) -> None:
    """Add an account (PAPER and testnet unless told otherwise)."""
    engine = state.engine()
    limits = _limits(kwargs)
    new = engine.accounts.add(name, exchange, mode=mode, mainnet=mainnet, quote_currency=quote_currency,
                              initial_capital=initial_capital, **limits)
    if api_base_url:
        new = engine.accounts.set(name, api_base_url=api_base_url)
    data = account_dict(new)
    if state.json:
        emit_json(data)
    else:
        note = "" if data["mode"] == "PAPER" else " (trading disabled until `account set --enable-trading`)"
        click.echo(f"added account {name}: {data['exchange']} {data['mode']} {data['network']}{note}")


@account.command("list")
@click.option("--archived", is_flag=True, help="Include archived accounts.")
@json_option
@pass_state
def account_list(state: CliState, archived: bool) -> None:
    """List accounts."""
    rows = [account_dict(a) for a in state.engine().accounts.list(include_archived=archived)]
    if state.json:
        emit_json(rows)
    else:
        table(rows, ["name", "exchange", "mode", "network", "trading_state", "trading_enabled"], empty="no accounts")


@account.command("show")
@click.argument("name")
@json_option
@pass_state
def account_show(state: CliState, name: str) -> None:
    """Show one account: venue, network, endpoint, limits, state."""
    data = account_dict(state.engine().accounts.get(name, include_archived=True))
    if state.json:
        emit_json(data)
        return
    pairs = [(k, data[k]) for k in ("name", "exchange", "mode", "network", "api_base_url", "trading_state",
                                   "trading_enabled", "require_confirmation", "quote_currency")]
    pairs = [(k, v if v is not None else ("venue default" if k == "api_base_url" else v)) for k, v in pairs]
    pairs += [(k, v) for k, v in data["limits"].items()]
    pairs += [("initial_capital" if k == "initial" else f"{k}_cash", v) for k, v in data["capital"].items()]
    pairs += [("wallet", f"{data['wallet_address']} ({data['wallet_network']})" if data["wallet_address"] else None),
              ("credentials", ", ".join(data["credentials"]) or None), ("archived", data["archived"])]
    key_values(pairs)


@account.command("set")
@click.argument("name")
@click.option("--enable-trading/--disable-trading", "trading_enabled", default=None, help="Allow orders on this account.")
@click.option("--require-confirmation/--no-require-confirmation", default=None, help="LIVE orders wait for `order confirm`.")
@click.option("--mainnet/--testnet", default=None, help="Which network the venue adapter may use.")
@click.option("--mode", type=click.Choice(["paper", "live"], case_sensitive=False), default=None)
@click.option("--api-base-url", metavar="URL", help="Override the venue endpoint ('default' resets it).")
@limit_options
@json_option
@pass_state
def account_set(state: CliState, name: str, **kwargs: Any) -> None:
    """Change an account's limits or flags (audited with old and new values)."""
    changes = {k: v for k, v in kwargs.items() if v is not None}
    if not changes:
        fail("nothing to change: give at least one option (see --help)", EXIT_BAD_INPUT)
    updated = state.engine().accounts.set(name, **changes)
    data = account_dict(updated)
    if state.json:
        emit_json(data)
    else:
        click.echo(f"updated account {name}: {', '.join(sorted(changes))}")


@account.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def account_remove(state: CliState, name: str, yes: bool) -> None:
    """Remove an account; one with orders or trades is archived, its history kept."""
    engine = state.engine()
    engine.accounts.get(name)
    if not yes and not click.confirm(f"Remove account {name}?", default=False):
        fail("not confirmed; nothing changed", EXIT_BAD_INPUT)
    outcome = engine.accounts.remove(name)
    if state.json:
        emit_json({"account": name, "outcome": outcome})
    else:
        click.echo(f"account {name} {outcome}")


def attach(cli: click.Group) -> None:
    cli.add_command(account)
