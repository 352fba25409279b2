"""``tradeguard report``: how an account (or every account) did over a period."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import click

from tradeguard.cli.output import CliState, emit_json, fail, json_option, pass_state
from tradeguard.errors import EXIT_BAD_INPUT
from tradeguard.money import plain

SINCE_HELP = "Start of the period, inclusive: an ISO date or time (UTC unless an offset is given) or a duration ago (7d, 12h)."
UNTIL_HELP = "End of the period, exclusive (ISO date or time, or a duration ago)."


def money(value: Decimal | None, places: str = "0.00000001") -> str:
    """A Decimal for the table: rounded half-even to 8 places, trailing zeros dropped."""
    if value is None:
        return "-"
    return plain(value.quantize(Decimal(places), rounding=ROUND_HALF_EVEN))


def percent(value: Decimal | None) -> str:
    """A fraction as a percentage with two decimals."""
    return "-" if value is None else f"{(value * 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN)}%"


def _console() -> Any:
    import sys

    from rich.console import Console

    # on a terminal rich uses its width; piped output gets room for the widest table
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def render_report(summary: dict[str, Any]) -> None:
    """One account's report as rich tables on stdout."""
    from rich.table import Table

    console = _console()
    quote = summary["quote_currency"]
    end = summary["until"] or summary["period_end"]
    period = f"{summary['period_start'][:19]}Z → {end[:19]}Z"
    table = Table(title=f"{summary['account']} ({quote}) {period}", show_header=False, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("trades (fills)", f"{summary['trades']} ({summary['buys']} buys, {summary['sells']} sells)"),
        ("volume", money(summary["volume"])),
        ("fees", money(summary["fees"]) + "".join(f" + {money(v)} {k}" for k, v in summary["fees_other"].items())),
        ("realized PnL (gross)", money(summary["realized_pnl"])),
        ("realized PnL net of fees", money(summary["net_realized_pnl"])),
        ("unrealized PnL", money(summary["unrealized_pnl"])),
        ("total PnL (equity change less cash flows)", money(summary["total_pnl"])),
        ("equity start → end", f"{money(summary['equity_start'])} → {money(summary['equity_end'])}"),
        ("cash flows (deposits - withdrawals)", money(summary["cash_flows"])),
        ("capital base", summary["capital_base"]),
        ("closed trades", f"{summary['closed_trades']} ({summary['wins']} won, {summary['losses']} lost)"),
        ("win rate", percent(summary["win_rate"])),
        ("average win / loss", f"{money(summary['average_win'])} / {money(summary['average_loss'])}"),
        ("profit factor", money(summary["profit_factor"], "0.01") if summary["profit_factor"] is not None
         else ("∞" if summary["wins"] else "-")),
        ("max drawdown", f"{money(summary['max_drawdown'])} ({percent(summary['max_drawdown_pct'])})"),
        (f"Sharpe / Sortino (days: {summary['days']})",
         f"{money(summary['sharpe'], '0.01')} / {money(summary['sortino'], '0.01')}"),
        ("risk rejections", str(sum(summary["risk_rejections"].values()))),
        ("emergency stops", str(len(summary["emergency_stops"]))),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if summary["exposure"]:
        exposure = Table(title="exposure by symbol", title_justify="left")
        for column in ("symbol", "market", "quantity", "avg cost", "mark", "notional", "unrealized", "share"):
            exposure.add_column(column, justify="left" if column in ("symbol", "market") else "right")
        for row in summary["exposure"]:
            exposure.add_row(row["symbol"], row["market"], money(row["quantity"]), money(row["average_cost"]),
                             money(row["mark_price"]), money(row["notional"]), money(row["unrealized_pnl"]),
                             percent(row["share"]))
        console.print(exposure)
    if summary["risk_rejections"]:
        rejections = Table(title="risk rejections by rule", title_justify="left")
        rejections.add_column("rule")
        rejections.add_column("rejections", justify="right")
        for rule, count in summary["risk_rejections"].items():
            rejections.add_row(rule, str(count))
        console.print(rejections)
    if summary["emergency_stops"]:
        stops = Table(title="emergency stops", title_justify="left")
        for column in ("at", "type", "scope", "reason", "cancelled", "resolved"):
            stops.add_column(column)
        for event in summary["emergency_stops"]:
            stops.add_row(event["at"][:19] + "Z", event["type"], event["scope"], event["reason"],
                          str(event["orders_cancelled"]),
                          f"yes ({event['resolved_by']})" if event["resolved"] else "no")
        console.print(stops)
    click.echo(f"Sharpe and Sortino: {summary['annualisation']}; win rate and profit factor on closing fills, "
               "before fees.")


def render_summary(reports: list[dict[str, Any]]) -> None:
    """One row per account."""
    from rich.table import Table

    table = Table(title="all accounts", title_justify="left")
    for column in ("account", "quote", "trades", "volume", "fees", "realized", "unrealized", "total PnL",
                   "win rate", "max DD", "Sharpe"):
        table.add_column(column, justify="left" if column in ("account", "quote") else "right")
    for s in reports:
        table.add_row(s["account"], s["quote_currency"], str(s["trades"]), money(s["volume"]), money(s["fees"]),
                      money(s["realized_pnl"]), money(s["unrealized_pnl"]), money(s["total_pnl"]),
                      percent(s["win_rate"]), percent(s["max_drawdown_pct"]), money(s["sharpe"], "0.01"))
    _console().print(table)


@click.command()
@click.argument("account", required=False)
@click.option("--all", "all_", is_flag=True, help="Every account (a summary row each).")
@click.option("--since", metavar="TIME", help=SINCE_HELP)
@click.option("--until", metavar="TIME", help=UNTIL_HELP)
@click.option("--plot", "plot_path", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Also draw the equity curve with drawdown shading and fills marked (needs tradeguard[plot]).")
@click.option("--plot-size", default="1200x700", show_default=True, metavar="WxH", help="Picture size in pixels.")
@click.option("--mark-to-market", is_flag=True,
              help="Value open positions at the venue's current price (one ticker request per symbol) "
                   "instead of the last fill price.")
@json_option
@pass_state
def report(state: CliState, account: str | None, all_: bool, since: str | None, until: str | None,
           plot_path: str | None, plot_size: str, mark_to_market: bool) -> None:
    """Trades, volume, fees, PnL, win rate, drawdown, Sharpe/Sortino, exposure, risk rejections
    and emergency stops of ACCOUNT (or --all) over a period."""
    if bool(account) == all_:
        fail("give an ACCOUNT or --all (not both)", EXIT_BAD_INPUT)
    if plot_path and all_:
        fail("--plot draws one account: give an ACCOUNT instead of --all", EXIT_BAD_INPUT)
    size = None
    if plot_path:
        from tradeguard.reporting.plot import _matplotlib, parse_size

        size = parse_size(plot_size)
        _matplotlib()  # fail before any work if matplotlib is missing
    engine = state.engine()
    if mark_to_market and (all_ or until):
        fail("--mark-to-market values one account's positions now: give an ACCOUNT and no --until", EXIT_BAD_INPUT)
    if all_:
        reports = engine.reports.report_all(since=since, until=until)
        if state.json:
            emit_json({"accounts": [r.to_dict() for r in reports]})
        else:
            render_summary([r.summary for r in reports])
        return
    marks = engine.reports.venue_marks(account) if mark_to_market else None
    result = engine.reports.report(account, since=since, until=until, marks=marks)
    if plot_path:
        from tradeguard.reporting.plot import plot_equity

        try:
            plot_equity(result, plot_path, size)
        except OSError as exc:
            fail(f"--plot: cannot write {plot_path}: {exc.strerror or exc}", EXIT_BAD_INPUT)
    if state.json:
        emit_json(result.to_dict())
    else:
        render_report(result.summary)
        if plot_path:
            click.echo(f"equity curve written to {plot_path}")


def attach(cli: click.Group) -> None:
    cli.add_command(report)
