"""Reports, exports, replay and order explanations: read-only views of the stored rows.

``engine.reports`` is the embedding API::

    report = engine.reports.report("main", since="2026-01-01")
    report.summary["sharpe"], report.curve[-1].equity
    engine.reports.positions("main")  # stored positions: symbol, quantity, average_cost, PnL
    engine.reports.replay("main").ok
    engine.reports.explain(42)["steps"]
    engine.reports.export("trades", sys.stdout, format="jsonl")
"""

from __future__ import annotations

from datetime import datetime
from typing import IO, Any, Mapping

from tradeguard.clock import ensure_utc, parse_iso, utcnow
from tradeguard.durations import parse_duration
from tradeguard.errors import ValidationError
from tradeguard.service import Service, in_engine_db


def parse_time(value: Any, name: str) -> datetime | None:
    """A ``--since``/``--until`` value as UTC: ISO text (``2026-01-31``, ``2026-01-31T12:00Z``), a
    duration ago (``7d``, ``12h``, ``30m``, ``2w``), or an aware datetime; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        try:
            return ensure_utc(value)
        except ValueError:
            raise ValidationError(f"{name}: give a timezone-aware datetime") from None
    try:
        return parse_iso(str(value))
    except ValueError:
        pass
    try:
        return utcnow() - parse_duration(value, name)
    except ValidationError:
        raise ValidationError(f"{name}: expected an ISO date or time such as 2026-01-31 or 2026-01-31T12:00Z, "
                              f"or a duration ago such as 7d or 12h, got {value!r}") from None


def check_window(since: datetime | None, until: datetime | None) -> None:
    """Refuse an empty period."""
    if since is not None and until is not None and until <= since:
        raise ValidationError("--until must be later than --since")


class Reports(Service):
    """``engine.reports``: performance reports, exports, replay and order explanations."""

    @in_engine_db
    def report(self, account: str, *, since: Any = None, until: Any = None,
               marks: Mapping[str, Any] | None = None) -> Any:
        """The performance `Report` of one account for ``since <= t < until``."""
        from tradeguard.reporting.report import build_report

        start, end = parse_time(since, "since"), parse_time(until, "until")
        check_window(start, end)
        row = self.engine.accounts.get(account, include_archived=True)
        return build_report(row, start, end, marks)

    def venue_marks(self, account: str) -> dict[str, Any]:
        """The venue's last price of each symbol *account* holds (one ticker request per symbol)."""
        symbols = sorted({p["symbol"] for p in self.positions(account)})
        if not symbols:
            return {}
        adapter = self.engine.exchange_for(account)
        return {symbol: adapter.fetch_ticker(symbol).last for symbol in symbols}

    @in_engine_db
    def positions(self, account: str, *, include_flat: bool = False) -> list[dict[str, Any]]:
        """The account's stored positions (open ones unless *include_flat*), by symbol."""
        from tradeguard.storage.models import Position

        row = self.engine.accounts.get(account, include_archived=True)
        query = Position.select().where(Position.account == row.id).order_by(Position.symbol, Position.market)
        return [{"symbol": p.symbol, "market": p.market.value, "quantity": p.quantity,
                 "average_cost": p.average_cost, "realized_pnl": p.realized_pnl,
                 "unrealized_pnl": p.unrealized_pnl, "opened_at": p.opened_at, "updated_at": p.updated_at}
                for p in query if include_flat or p.quantity != 0]

    @in_engine_db
    def report_all(self, *, since: Any = None, until: Any = None) -> list[Any]:
        """One report per (non-archived) account, by name."""
        return [self.report(a.name, since=since, until=until) for a in self.engine.accounts.list()]

    @in_engine_db
    def replay(self, account: str, *, since: Any = None, until: Any = None) -> Any:
        """Rebuild positions and PnL from the stored fills and compare them with the stored rows."""
        from tradeguard.replay import replay_account

        start, end = parse_time(since, "since"), parse_time(until, "until")
        check_window(start, end)
        return replay_account(self.engine.accounts.get(account, include_archived=True), start, end)

    @in_engine_db
    def explain(self, order: int | str) -> dict[str, Any]:
        """The decision chain of one order (by id or client order id)."""
        from tradeguard.explain import explain_order

        return explain_order(order)

    @in_engine_db
    def export(self, table: str, out: IO[str], *, format: str = "jsonl", since: Any = None, until: Any = None,
               account: str | None = None) -> int:
        """Stream one table to *out* as csv or jsonl; return the number of rows written."""
        from tradeguard.export import export_table

        start, end = parse_time(since, "since"), parse_time(until, "until")
        check_window(start, end)
        account_id = self.engine.accounts.get(account, include_archived=True).id if account else None
        return export_table(table, out, format=format, since=start, until=end, account_id=account_id)
