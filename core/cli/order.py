"""``tradeguard order``: place, list, show, cancel, confirm."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from typing import Any

import click

from tradeguard.cli.output import CliState, emit_json, fail, json_option, key_values, pass_state, table
from tradeguard.clock import parse_iso, utcnow
from tradeguard.errors import EXIT_BAD_INPUT, EXIT_NOT_SENT, OrderNotSent, ValidationError
from tradeguard.types import TradingMode


def cli_actor(by: str | None = None) -> str:
    """Who acts at the CLI: ``--by`` or ``cli:<login>``."""
    if by:
        return by
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def parse_since(text: str | None) -> datetime | None:
    """``--since``: an ISO time (``2026-01-02``, ``…T10:00Z``) or a duration ago (``30m``, ``2h``, ``7d``)."""
    if text is None:
        return None
    from tradeguard.durations import parse_duration

    try:
        return parse_iso(text)
    except ValueError:
        pass
    try:
        return utcnow() - parse_duration(text, "--since")
    except ValidationError:
        raise ValidationError(f"--since: expected an ISO time or a duration like 30m, 2h, 7d; got {text!r}") from None


def _not_sent(state: CliState, exc: OrderNotSent) -> None:
    if state.json:
        emit_json({"status": exc.status, "order_id": exc.order_id, "sent": False, "message": str(exc)})
    fail(str(exc), EXIT_NOT_SENT)


def _order_view(state: CliState, data: dict[str, Any], verb: str) -> None:
    if state.json:
        emit_json(data)
        return
    filled = f", filled {data['filled_quantity']} @ {data['average_fill_price']}" if data["average_fill_price"] else ""
    click.echo(f"order {data['id']} {verb}: {data['side']} {data['quantity']} {data['symbol']} "
               f"{data['type']}{' @ ' + data['price'] if data['price'] else ''} -> {data['status']}{filled}")


@click.group()
def order() -> None:
    """Place and follow orders (every order passes the account's risk rules)."""


@order.command("place")
@click.argument("account")
@click.argument("symbol")
@click.argument("side", type=click.Choice(["buy", "sell"], case_sensitive=False))
@click.argument("quantity")
@click.option("--type", "type_", type=click.Choice(["market", "limit"], case_sensitive=False), default="market",
              show_default=True)
@click.option("--price", help="Limit price (required for --type limit).")
@click.option("--stop-loss", help="Stop-loss trigger price (a protective order once this one fills).")
@click.option("--take-profit", help="Take-profit price (a protective order once this one fills).")
@click.option("--leverage", default="1", show_default=True)
@click.option("--reduce-only", is_flag=True, help="Only reduce an existing position.")
@click.option("--reason", help="Why (stored with the order and audited).")
@click.option("--by", help="Who places it (default cli:<login>).")
@click.option("--yes", is_flag=True, help="Answer the 'send this LIVE order?' prompt (never bypasses require-confirmation).")
@json_option
@pass_state
def order_place(state: CliState, account: str, symbol: str, side: str, quantity: str, type_: str, price: str | None,
                stop_loss: str | None, take_profit: str | None, leverage: str, reduce_only: bool,
                reason: str | None, by: str | None, yes: bool) -> None:
    """Place an order. Exit 3 if it was not sent (refused, halted, or waiting for confirmation)."""
    engine = state.engine()
    row = engine.accounts.get(account)
    if row.mode is TradingMode.LIVE and not yes and sys.stdin.isatty():
        if not click.confirm(f"Send this LIVE order to {row.exchange}: {side} {quantity} {symbol}?", default=False):
            fail("not confirmed; nothing was sent", EXIT_BAD_INPUT)
    try:
        placed = engine.place_order(account, symbol.upper(), side.lower(), quantity, type=type_.lower(), price=price,
                                    stop_loss=stop_loss, take_profit=take_profit, leverage=leverage,
                                    reduce_only=reduce_only, actor=cli_actor(by), reason=reason)
    except OrderNotSent as exc:
        _not_sent(state, exc)
        return
    from tradeguard.orders import order_dict

    _order_view(state, order_dict(placed, account), "placed")


@order.command("list")
@click.argument("account", required=False)
@click.option("--status", multiple=True, help="Only these states (repeatable), e.g. OPEN, FILLED.")
@click.option("--since", help="Created since an ISO time or a duration ago (30m, 2h, 7d).")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 100000))
@json_option
@pass_state
def order_list(state: CliState, account: str | None, status: tuple[str, ...], since: str | None, limit: int) -> None:
    """List orders, newest first."""
    from tradeguard.orders import order_dict

    engine = state.engine()
    rows = [order_dict(o, o.account.name) for o in engine.orders.list(account, status=status or None,
                                                                      since=parse_since(since), limit=limit)]
    if state.json:
        emit_json(rows)
    else:
        table(rows, ["id", "account", "symbol", "side", "type", "quantity", "price", "filled_quantity", "status",
                     "created_at"], empty="no orders")


@order.command("show")
@click.argument("order_id")
@json_option
@pass_state
def order_show(state: CliState, order_id: str) -> None:
    """Show one order (by id or client order id) with its risk decision and state history."""
    from tradeguard.orders import order_dict

    engine = state.engine()
    row = engine.orders.get(order_id)
    data = order_dict(row, row.account.name)
    data["events"] = [{"old": e.old_status, "new": e.new_status, "actor": e.actor, "detail": e.detail,
                       "at": e.created_at.isoformat()} for e in engine.orders.events(row.id)]
    if state.json:
        emit_json(data)
        return
    key_values([(k, data[k]) for k in ("id", "account", "client_order_id", "exchange_order_id", "symbol", "side",
                                      "type", "quantity", "price", "filled_quantity", "average_fill_price", "fee",
                                      "status", "stop_loss", "take_profit", "parent", "created_by", "reason",
                                      "confirmed_by", "created_at")])
    if data["error"]:
        click.echo(f"error: {data['error']['code']}: {data['error']['message']}")
    for rule in (data["risk"] or {}).get("rules", []):
        if rule["verdict"] != "allow" or rule["severity"] != "INFO":
            click.echo(f"risk {rule['rule']}: {rule['verdict']} ({rule['severity']}) {rule['reason']}")
    for event in data["events"]:
        click.echo(f"{event['at']}  {event['old'] or '-'} -> {event['new']}  by {event['actor']}")


@order.command("cancel")
@click.argument("order_id")
@click.option("--reason", help="Why (audited).")
@click.option("--by", help="Who cancels (default cli:<login>).")
@json_option
@pass_state
def order_cancel(state: CliState, order_id: str, reason: str | None, by: str | None) -> None:
    """Cancel an order (and its stop-loss/take-profit children)."""
    from tradeguard.orders import order_dict

    row = state.engine().cancel_order(order_id, actor=cli_actor(by), reason=reason)
    _order_view(state, order_dict(row, row.account.name), "cancelled" if row.status.value == "CANCELED" else "is")


@order.command("confirm")
@click.argument("order_id")
@click.option("--by", required=True, help="Who confirms (recorded and audited).")
@json_option
@pass_state
def order_confirm(state: CliState, order_id: str, by: str) -> None:
    """Confirm an order waiting for confirmation: the rules run again, then it is sent."""
    from tradeguard.orders import order_dict

    try:
        row = state.engine().confirm_order(order_id, by=by)
    except OrderNotSent as exc:
        _not_sent(state, exc)
        return
    _order_view(state, order_dict(row, row.account.name), "confirmed")


def attach(cli: click.Group) -> None:
    cli.add_command(order)
