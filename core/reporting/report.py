"""The performance report of one account over a period, built from the stored rows.

Fills (``trade``), cash flows, position snapshots (for mark prices), orders,
risk logs and emergency events are read; nothing is written. The period is
``since <= t < until`` (UTC); fills before ``since`` are replayed too, because
average costs and equity depend on them. See `tradeguard.reporting.metrics`
for how each figure is defined.
"""

from __future__ import annotations

import decimal
import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator, Mapping

import peewee

from tradeguard.clock import isoformat, utcnow
from tradeguard.reporting import metrics
from tradeguard.reporting.ledger import CONTEXT, ZERO, Ledger, split_symbol
from tradeguard.reporting.stream import keyset
from tradeguard.storage.models import Account, BalanceSnapshot, CashFlow, EmergencyEvent, Order, PositionSnapshot, RiskLog, Trade

#: Cash-flow kinds and the sign they have for equity. An UNEXPLAINED balance change
#: (found by sync) says its direction at the start of its note: ``in: …`` or ``out: …``.
FLOW_SIGNS = {"DEPOSIT": 1, "TRANSFER_IN": 1, "WITHDRAWAL": -1, "TRANSFER_OUT": -1}


@dataclass(frozen=True)
class EquityPoint:
    """Equity after one event (a fill, a cash flow or a new mark price)."""

    at: datetime
    equity: Decimal
    adjusted: Decimal  # equity minus the cash flows since the start of the period
    kind: str  # start, fill, flow, mark, end
    side: str | None = None  # buy / sell for fills


@dataclass
class Report:
    """A report's figures (``summary``), its equity curve and its daily returns."""

    summary: dict[str, Any]
    curve: list[EquityPoint] = field(default_factory=list)
    daily: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (Decimals stay Decimals: `emit_json` writes them as exact strings)."""
        return {**self.summary, "daily_returns": self.daily}


# -- reading events in time order ---------------------------------------------------------


def fill_rows() -> peewee.ModelSelect:
    """The columns the books need from each fill, as light named tuples (no model instances)."""
    return (Trade.select(Trade.id, Trade.exchange_trade_id, Trade.exchange_timestamp, Trade.symbol, Trade.side,
                         Trade.price, Trade.quantity, Trade.fee, Trade.fee_currency, Trade.realized_pnl,
                         Order.market.alias("order_market"))
            .join(Order, peewee.JOIN.LEFT_OUTER)
            .where(Trade.tx_hash.is_null())  # on-chain wallet transfers are cash movements, not fills
            .namedtuples())


def _fills(account: Account, until: datetime | None) -> Iterator[tuple]:
    query = fill_rows().where(Trade.account == account.id)
    if until is not None:
        query = query.where(Trade.exchange_timestamp < until)
    for row in keyset(query, Trade.exchange_timestamp, Trade.id):
        yield (row.exchange_timestamp, 1, row.id, "fill", row)


def _flows(account: Account, until: datetime | None) -> Iterator[tuple]:
    query = CashFlow.select().where(CashFlow.account == account.id)
    if until is not None:
        query = query.where(CashFlow.occurred_at < until)
    for row in keyset(query, CashFlow.occurred_at, CashFlow.id):
        yield (row.occurred_at, 0, row.id, "flow", row)


def _marks(account: Account, until: datetime | None) -> Iterator[tuple]:
    query = PositionSnapshot.select().where((PositionSnapshot.account == account.id)
                                            & PositionSnapshot.mark_price.is_null(False))
    if until is not None:
        query = query.where(PositionSnapshot.taken_at < until)
    for row in keyset(query, PositionSnapshot.taken_at, PositionSnapshot.id):
        yield (row.taken_at, 2, row.id, "mark", row)


def _baseline(account: Account, until: datetime | None) -> Iterator[tuple]:
    """Without initial capital, the first synced balance of the quote currency opens the books (as a cash flow)."""
    if account.initial_capital:
        return
    first = (BalanceSnapshot.select().where((BalanceSnapshot.account == account.id)
                                            & (BalanceSnapshot.asset == account.quote_currency))
             .order_by(BalanceSnapshot.taken_at, BalanceSnapshot.id).first())
    if first is None or (until is not None and first.taken_at >= until) or not first.total:
        return
    yield (first.taken_at, -1, first.id, "baseline", first)


def flow_amount(flow: CashFlow, quote: str) -> Decimal | None:
    """A cash flow's signed value in the quote currency (None if it cannot be valued or has no direction)."""
    sign = FLOW_SIGNS.get(flow.kind)
    if sign is None and flow.kind == "UNEXPLAINED":
        direction = (flow.note or "").split(":", 1)[0].strip().lower()
        sign = {"in": 1, "out": -1}.get(direction)
    if sign is None:
        return None
    if flow.asset.upper() == quote.upper():
        value = flow.amount
    elif flow.usd_value is not None:
        value = flow.usd_value
    else:
        return None
    return value * sign


# -- the report -----------------------------------------------------------------------------


def build_report(account: Account, since: datetime | None = None, until: datetime | None = None,
                 marks: Mapping[str, Any] | None = None) -> Report:
    """The performance report of *account* for ``since <= t < until``.

    :param marks: current prices by symbol to value open positions at the end
        (default: the last fill price or position-snapshot mark of each symbol).
    """
    with decimal.localcontext(CONTEXT):
        return _Builder(account, since, until, marks).run()


class _Builder:
    def __init__(self, account: Account, since: datetime | None, until: datetime | None,
                 marks: Mapping[str, Any] | None):
        self.account = account
        self.quote = account.quote_currency
        self.since, self.until = since, until
        self.override = {k: Decimal(str(v)) for k, v in (marks or {}).items()}
        self.ledger = Ledger(cash=account.initial_capital)
        self.marks: dict[str, Decimal] = {}
        self.curve: list[EquityPoint] = []
        self.started = False
        self.flows_in_period = ZERO
        self.flows_by_day: dict[date, Decimal] = defaultdict(lambda: ZERO)
        self.unvalued_flows = 0
        self.trades = self.buys = self.sells = 0
        self.volume = self.fees = self.realized = ZERO
        self.fees_other: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.closing_pnls: list[Decimal] = []
        self.capital_base = "initial capital" if account.initial_capital else "none"

    def equity(self) -> Decimal:
        return self.ledger.cash + self.ledger.holdings_value(self.marks)

    def _start(self, at: datetime) -> None:
        self.started = True
        equity = self.equity()
        self.curve.append(EquityPoint(self.since or at, equity, equity, "start"))

    def _point(self, at: datetime, kind: str, side: str | None = None) -> None:
        equity = self.equity()
        self.curve.append(EquityPoint(at, equity, equity - self.flows_in_period, kind, side))

    def run(self) -> Report:
        events = heapq.merge(_baseline(self.account, self.until), _fills(self.account, self.until),
                             _flows(self.account, self.until), _marks(self.account, self.until), key=lambda e: e[:3])
        for at, _, _, kind, row in events:
            in_period = self.since is None or at >= self.since
            if in_period and not self.started:
                self._start(at)
            getattr(self, f"_on_{kind}")(row, in_period)
            if in_period:
                self._point(at, "flow" if kind == "baseline" else kind, row.side.value if kind == "fill" else None)
        if not self.started:
            self._start(self.since or self.account.created_at)
        if self.override:
            self.marks.update(self.override)
            self._point(self.until or self.curve[-1].at, "end")
        return self._report()

    def _on_fill(self, trade: Trade, in_period: bool) -> None:
        market = getattr(trade, "order_market", None)
        market_name = getattr(market, "value", market) or "spot"
        effect = self.ledger.apply(trade.symbol, trade.side.value, trade.quantity, trade.price, trade.fee,
                                   trade.fee_currency, market_name)
        self.marks[trade.symbol] = trade.price
        if not in_period:
            return
        self.trades += 1
        if trade.side.value == "buy":
            self.buys += 1
        else:
            self.sells += 1
        self.volume += trade.price * trade.quantity
        base, quote = split_symbol(trade.symbol)
        currency = trade.fee_currency or quote
        if trade.fee:
            if currency == quote:
                self.fees += trade.fee
            elif currency == base:
                self.fees += trade.fee * trade.price
            else:
                self.fees_other[currency] += trade.fee
        self.realized += trade.realized_pnl
        if effect.closing:
            self.closing_pnls.append(trade.realized_pnl)

    def _on_flow(self, flow: CashFlow, in_period: bool) -> None:
        amount = flow_amount(flow, self.quote)
        if amount is None:
            if in_period:
                self.unvalued_flows += 1
            return
        self.ledger.cash += amount
        if in_period:
            self.flows_in_period += amount
            self.flows_by_day[flow.occurred_at.date()] += amount

    def _on_baseline(self, snapshot: BalanceSnapshot, in_period: bool) -> None:
        self.capital_base = f"first synced {self.quote} balance"
        self.ledger.cash += snapshot.total
        if in_period:
            self.flows_in_period += snapshot.total
            self.flows_by_day[snapshot.taken_at.date()] += snapshot.total

    def _on_mark(self, snapshot: PositionSnapshot, in_period: bool) -> None:
        self.marks[snapshot.symbol] = snapshot.mark_price

    # -- figures ---------------------------------------------------------------------------

    def _daily(self) -> list[dict[str, Any]]:
        """Equity at the end of each UTC day of the period and the day's return."""
        first = self.curve[0].at.date()
        last_event = self.curve[-1].at.date()
        last = last_event
        if self.until is not None:  # up to the end of the period, but not into the future
            last = max(min(self.until - timedelta(microseconds=1), utcnow()).date(), last_event)
        closes: dict[date, Decimal] = {}
        for point in self.curve:
            closes[point.at.date()] = point.equity
        rows: list[dict[str, Any]] = []
        equity = self.curve[0].equity
        day = first
        while day <= last:
            open_equity = equity
            equity = closes.get(day, equity)
            flow = self.flows_by_day.get(day, ZERO)
            rows.append({"date": day.isoformat(), "equity": equity, "cash_flow": flow,
                         "return": metrics.daily_return(open_equity, equity, flow)})
            day += timedelta(days=1)
        return rows

    def _report(self) -> Report:
        marks = dict(self.marks)
        daily = self._daily()
        returns = [row["return"] for row in daily if row["return"] is not None]
        stats = metrics.trade_stats(self.closing_pnls)
        drawdown = metrics.max_drawdown([p.adjusted for p in self.curve])
        start, end = self.curve[0], self.curve[-1]
        unrealized = self.ledger.unrealized(marks)
        exposure = self._exposure(marks)
        summary: dict[str, Any] = {
            "account": self.account.name,
            "quote_currency": self.quote,
            "since": isoformat(self.since) if self.since else None,
            "until": isoformat(self.until) if self.until else None,
            "period_start": isoformat(start.at),
            "period_end": isoformat(end.at),
            "trades": self.trades,
            "buys": self.buys,
            "sells": self.sells,
            "volume": self.volume,
            "fees": self.fees,
            "fees_other": dict(sorted(self.fees_other.items())),
            "realized_pnl": self.realized,
            "net_realized_pnl": self.realized - self.fees,
            "unrealized_pnl": unrealized,
            "equity_start": start.equity,
            "equity_end": end.equity,
            "capital_base": self.capital_base,
            "cash_flows": self.flows_in_period,
            "unvalued_cash_flows": self.unvalued_flows,
            "total_pnl": end.equity - start.equity - self.flows_in_period,
            "closed_trades": stats.closed,
            "wins": stats.wins,
            "losses": stats.losses,
            "win_rate": stats.win_rate,
            "gross_profit": stats.gross_profit,
            "gross_loss": stats.gross_loss,
            "average_win": stats.average_win,
            "average_loss": stats.average_loss,
            "largest_win": stats.largest_win,
            "largest_loss": stats.largest_loss,
            "profit_factor": stats.profit_factor,
            "max_drawdown": drawdown.amount,
            "max_drawdown_pct": drawdown.fraction,
            "days": len(daily),
            "sharpe": metrics.sharpe(returns),
            "sortino": metrics.sortino(returns),
            "annualisation": metrics.ANNUALISATION,
            "exposure": exposure,
            "orders": self._orders(),
            "risk_rejections": self._risk("BLOCK"),
            "risk_confirmations": self._risk("CONFIRM"),
            "risk_warnings": self._risk("WARNING"),
            "emergency_stops": self._emergencies(),
        }
        return Report(summary, self.curve, daily)

    def _exposure(self, marks: dict[str, Decimal]) -> list[dict[str, Any]]:
        rows = []
        for book in self.ledger.open_books():
            mark = marks.get(book.symbol)
            notional = abs(book.quantity) * (mark if mark is not None else book.average_cost)
            rows.append({"symbol": book.symbol, "market": book.market, "quantity": book.quantity,
                         "average_cost": book.average_cost, "mark_price": mark, "notional": notional,
                         "unrealized_pnl": (mark - book.average_cost) * book.quantity if mark is not None else None})
        total = sum((r["notional"] for r in rows), ZERO)
        for row in rows:
            row["share"] = metrics.ratio(row["notional"] / total) if total else None
        return rows

    def _window(self, column: peewee.Field) -> Any:
        condition = peewee.Value(True)
        if self.since is not None:
            condition &= column >= self.since
        if self.until is not None:
            condition &= column < self.until
        return condition

    def _orders(self) -> dict[str, int]:
        query = (Order.select(Order.status, peewee.fn.COUNT(Order.id).alias("n"))
                 .where((Order.account == self.account.id) & self._window(Order.created_at)).group_by(Order.status))
        return {row.status.value: row.n for row in query}

    def _risk(self, event_type: str) -> dict[str, int]:
        query = (RiskLog.select(RiskLog.rule, peewee.fn.COUNT(RiskLog.id).alias("n"))
                 .where((RiskLog.account == self.account.id) & (RiskLog.event_type == event_type)
                        & self._window(RiskLog.created_at))
                 .group_by(RiskLog.rule))
        return dict(sorted((row.rule, row.n) for row in query))

    def _emergencies(self) -> list[dict[str, Any]]:
        query = (EmergencyEvent.select()
                 .where(((EmergencyEvent.account == self.account.id) | EmergencyEvent.account.is_null())
                        & self._window(EmergencyEvent.created_at))
                 .order_by(EmergencyEvent.created_at, EmergencyEvent.id))
        return [{"id": e.id, "at": isoformat(e.created_at), "type": e.event_type,
                 "scope": "account" if e.account_id else "installation", "reason": e.reason, "source": e.source,
                 "orders_cancelled": e.orders_cancelled, "positions_liquidated": e.positions_liquidated,
                 "financial_impact": e.financial_impact, "resolved": e.resolved,
                 "resolved_by": e.resolved_by} for e in query]
