"""``tradeguard order explain ID``: how an order was decided, sent and filled.

Adds the ``explain`` command to the ``order`` group of `tradeguard.cli.order`
(the order-path CLI); without that module it creates the group.
"""

from __future__ import annotations

import json
from typing import Any

import click

from tradeguard.cli.output import CliState, emit_json, json_option, pass_state

MARKS = {"allow": "ok   ", "require_confirmation": "CONF ", "block": "BLOCK"}


def _short(detail: Any, width: int = 110) -> str:
    text = json.dumps(detail, sort_keys=True, separators=(", ", "="), ensure_ascii=False) if detail else ""
    text = text.replace('"', "")
    return text if len(text) <= width else text[: width - 1] + "…"


def render(data: dict[str, Any]) -> None:
    """The decision chain as text."""
    o, r = data["order"], data["request"]
    price = f" @ {r['price']}" if r["price"] else ""
    click.echo(f"order {o['id']} ({o['client_order_id']}) on {o['account']}: {r['side']} {r['quantity']} "
               f"{r['symbol']} {r['type']}{price} -> {o['status']}")
    who = r["placed_by"] + (f", bot {r['bot']}" if r["bot"] else "") + (f", run {r['run']}" if r["run"] else "")
    click.echo(f"1. request  {r['at']} by {who}" + (f" — reason: {r['reason']}" if r["reason"] else ""))
    extras = [f"{k} {r[k]}" for k in ("stop_loss", "take_profit") if r[k]]
    if r["reduce_only"]:
        extras.append("reduce-only")
    if extras:
        click.echo(f"             {', '.join(extras)}")
    risk = data["risk"]
    click.echo(f"2. risk     verdict {risk['verdict'] or '-'}")
    for rule in risk["rules"]:
        mark = MARKS.get(rule.get("verdict"), rule.get("verdict", "?"))
        reason = f" {rule['reason']}" if rule.get("reason") else ""
        metrics = f" [{_short(rule.get('metrics'), 70)}]" if rule.get("metrics") else ""
        click.echo(f"   {mark} {rule['rule']}:{reason}{metrics}")
    conf = data["confirmation"]
    click.echo(f"3. confirm  {'confirmed by ' + conf['confirmed_by'] + ' at ' + conf['at'] if conf else 'not needed or not given'}")
    venue = data["venue"]
    line = f"4. venue    {venue['exchange']}"
    if venue["exchange_order_id"]:
        line += f" id {venue['exchange_order_id']}, status {venue['exchange_status']}"
    else:
        line += " (not sent)" if not venue["submitted_at"] else ""
    if venue["retries"]:
        line += f", {venue['retries']} retries"
    if venue["error"]:
        line += f", error {venue['error']['code']}: {venue['error']['message']}"
    click.echo(line)
    click.echo(f"5. fills    {len(data['fills'])}" + (f", filled {data['result']['filled_quantity']} @ "
                                                       f"{data['result']['average_fill_price']}, fee "
                                                       f"{data['result']['fee']}" if data["fills"] else ""))
    for fill in data["fills"]:
        click.echo(f"   {fill['at']} {fill['trade_id']} {fill['side']} {fill['quantity']} @ {fill['price']} "
                   f"fee {fill['fee']} {fill['fee_currency'] or ''}".rstrip())
    for child in data["children"]:
        click.echo(f"   protective order {child['id']} {child['type']} @ {child['price']} -> {child['status']}")
    click.echo("timeline:")
    for step in data["steps"]:
        click.echo(f"   {step['at']} {step['source']:<12} {step['actor']:<14} {step['what']:<24} {_short(step['detail'])}"
                   .rstrip())


@click.command("explain")
@click.argument("order_id", metavar="ID")
@json_option
@pass_state
def explain(state: CliState, order_id: str) -> None:
    """Show the decision chain of order ID (or client order id): the request, each risk rule's
    verdict, the confirmation, the venue's answers and the fills, with the audit entries."""
    data = state.engine().reports.explain(order_id)
    if state.json:
        emit_json(data)
    else:
        render(data)


def attach(cli: click.Group) -> None:
    """Add ``explain`` to the order-path's ``order`` group (attached by its own module), or create the group."""
    try:
        from tradeguard.cli.order import order as group
    except ImportError:
        group = cli.commands.get("order")
        if group is None:

            @click.group("order")
            def group() -> None:
                """Orders."""

            cli.add_command(group)
    group.add_command(explain)
