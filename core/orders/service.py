"""``engine.orders``: place, confirm, cancel, follow and reconcile orders.

The guarded path (`Orders.place`):

1. outside any lock: validate the request, load the venue's market and
   ticker (network calls never run while an account is locked);
2. in ONE transaction holding the account lock: re-read the account, run the
   risk rules, insert the order with a fresh random client order id, its
   decision and state (PENDING_SUBMIT, PENDING_CONFIRMATION or REJECTED),
   reserve cash, write the risk log and the audit entries (audit head last),
   commit (durably: SQLite synchronous=FULL);
3. only then send it to the venue (`submit`). An unknown outcome
   (`VenueUnavailable`) is looked up by client order id before any retry; a
   definite refusal (`VenueRejected`) ends in REJECTED with the venue's code.
"""

from __future__ import annotations

import dataclasses
import decimal
import logging
import re
import secrets
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

from tradeguard.clock import utcnow
from tradeguard.errors import (
    ConfirmationRequired,
    CredentialsError,
    EmergencyStopActive,
    NotFound,
    RiskRejected,
    TradeguardError,
    ValidationError,
    VenueError,
    VenueRejected,
    VenueUnavailable,
)
from tradeguard.money import plain
from tradeguard.orders import ledger
from tradeguard.orders.lifecycle import ACTIVE_STATUSES, LIVE_STATUSES, check_transition
from tradeguard.orders.locking import AccountTransaction, account_lock, lock_disabled
from tradeguard.orders.venues import Venues
from tradeguard.protocols import CAP_NATIVE_OCO
from tradeguard.risk.context import RiskContext
from tradeguard.risk.engine import Assessment
from tradeguard.service import Service, in_engine_db
from tradeguard.storage import rows
from tradeguard.storage.models import Account, Order, OrderEvent, Trade
from tradeguard.trading_state import stricter
from tradeguard.types import (
    Decision,
    Fill,
    Market,
    MarketKind,
    OrderRequest,
    OrderStatus as S,
    OrderType,
    Side,
    Ticker,
    TradingMode,
    TradingState,
    Verdict,
    VenueOrder,
)

log = logging.getLogger("tradeguard.orders")

CLIENT_ID_PREFIX = "tg-"
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,36}$")
#: A PENDING_SUBMIT order younger than this is left alone by reconciliation (it may be in flight).
RECONCILE_GRACE = timedelta(seconds=60)
#: Test-only: seconds to wait between the risk check and the insert (widens the race window).
RACE_WINDOW_ENV = "TRADEGUARD_TEST_RACE_WINDOW"
#: Rules whose block means "the trading state refused it" (EmergencyStopActive, exit 3).
STATE_RULES = ("emergency_stop",)


def new_client_order_id() -> str:
    """A fresh random client order id, e.g. ``tg-Qk3…`` (never a counter: a restored database cannot repeat one)."""
    return CLIENT_ID_PREFIX + secrets.token_urlsafe(16)


def order_dict(order: Order, account_name: str | None = None) -> dict[str, Any]:
    """A JSON-ready view of an order."""
    def num(value: Decimal | None) -> str | None:
        return None if value is None else plain(value)

    return {
        "id": order.id,
        "account": account_name or order.account.name,
        "client_order_id": order.client_order_id,
        "exchange_order_id": order.exchange_order_id,
        "symbol": order.symbol,
        "market": order.market.value,
        "side": order.side.value,
        "type": order.type.value,
        "quantity": num(order.quantity),
        "price": num(order.price),
        "filled_quantity": num(order.filled_quantity),
        "average_fill_price": num(order.average_fill_price),
        "fee": num(order.fee),
        "fee_currency": order.fee_currency,
        "status": order.status.value,
        "exchange_status": order.exchange_status,
        "leverage": num(order.leverage),
        "reduce_only": order.reduce_only,
        "stop_loss": num(order.stop_loss),
        "take_profit": num(order.take_profit),
        "parent": order.parent_id,
        "reserved": {"amount": num(order.reserved_amount), "asset": order.reserved_asset},
        "risk": order.risk_details,
        "created_by": order.created_by,
        "bot": order.bot,
        "run": order.run_id,
        "reason": order.reason,
        "confirmed_by": order.confirmed_by,
        "error": {"code": order.error_code, "message": order.error_message} if order.error_message else None,
        "retry_count": order.retry_count,
        "imported": order.imported,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
    }


def _race_window() -> float:
    import os

    try:
        return float(os.environ.get(RACE_WINDOW_ENV, "0") or 0)
    except ValueError:
        return 0.0


@dataclasses.dataclass
class Prepared:
    """What `place` learned outside the lock."""

    request: OrderRequest
    market: Market | None
    ticker: Ticker | None
    ticker_error: str | None
    venue_testnet: bool


class Orders(Service):
    """The order lifecycle (``engine.orders``)."""

    #: Seconds before the first retry after an unknown venue outcome; doubled each time.
    retry_backoff = 0.25

    def __init__(self, engine: Any):
        super().__init__(engine)
        self.venues = Venues(engine)
        self._submit_lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------

    @in_engine_db
    def get(self, order_id: int | str) -> Order:
        """An order by id or client order id; NotFound otherwise."""
        text = str(order_id).strip()
        order = None
        if text.isdigit():
            order = Order.get_or_none(Order.id == int(text))
        if order is None:
            order = Order.get_or_none(Order.client_order_id == text)
        if order is None:
            raise NotFound(f"no order {order_id!r}")
        return order

    @in_engine_db
    def list(self, account: str | None = None, *, status: Iterable[str] | str | None = None,
             since: datetime | None = None, limit: int = 500) -> list[Order]:
        """Orders, newest first, filtered by account, status and creation time."""
        query = Order.select(Order, Account).join(Account).order_by(Order.id.desc()).limit(limit)
        if account is not None:
            query = query.where(Order.account == self.engine.accounts.get(account, include_archived=True).id)
        if status is not None:
            names = [status] if isinstance(status, str) else list(status)
            try:
                statuses = [S(str(s).upper()) for s in names]
            except ValueError:
                raise ValidationError(f"status: expected one of {', '.join(s.value for s in S)}, got {status!r}") from None
            query = query.where(Order.status.in_(statuses))
        if since is not None:
            query = query.where(Order.created_at >= since)
        return list(query)

    @in_engine_db
    def events(self, order_id: int) -> list[OrderEvent]:
        """The stored state transitions of an order, oldest first."""
        return list(OrderEvent.select().where(OrderEvent.order == order_id).order_by(OrderEvent.id))

    # -- placing ---------------------------------------------------------------------------

    @in_engine_db
    def place(self, account: str, symbol: str, side: str | Side, quantity: Any, *, type: str | OrderType = "market",
              price: Any = None, stop_loss: Any = None, take_profit: Any = None, leverage: Any = 1,
              reduce_only: bool = False, client_order_id: str | None = None, actor: str = "api",
              reason: str | None = None, run: Any = None, market: str | MarketKind = MarketKind.SPOT,
              max_retries: int | None = None, bot: str | None = None, _emergency: bool = False) -> Order:
        """Check, record and send one order; return it as it stands after the venue answered.

        Raises `RiskRejected` (a rule blocked it), `EmergencyStopActive` (the
        trading state refused it), `ConfirmationRequired` (it waits for
        `confirm`) — each with ``order_id`` of the stored order —,
        `ValidationError` for bad input (nothing stored), `VenueRejected` /
        `VenueUnavailable` for venue failures after the order was stored.
        """
        account_row = self.engine.accounts.get(account)
        if client_order_id is not None:
            if not CLIENT_ID_PATTERN.match(client_order_id):
                raise ValidationError("client_order_id: 1-36 characters of letters, digits, '.', ':', '_' or '-'")
            if Order.select(Order.id).where(Order.client_order_id == client_order_id).exists():
                raise ValidationError(f"client_order_id {client_order_id!r} was used before")
        if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0 or max_retries > 20):
            raise ValidationError("max_retries: expected a whole number from 0 to 20")
        if actor is None or not str(actor).strip():
            raise ValidationError("actor: say who places the order")
        request = OrderRequest(account=account, symbol=symbol, side=side, quantity=quantity, type=type, price=price,
                               stop_loss=stop_loss, take_profit=take_profit, leverage=leverage,
                               reduce_only=reduce_only, client_order_id=client_order_id, market=market)
        prepared = self._prepare(account_row, request)
        run_id = getattr(run, "id", run)
        order, assessment = self._admit(account_row.id, prepared, actor=str(actor), reason=reason, run_id=run_id,
                                        bot=bot, max_retries=max_retries, emergency=_emergency)
        return self._after_admit(order, assessment, account_row)

    def _prepare(self, account: Account, request: OrderRequest) -> Prepared:
        adapter = self.venues.for_account(account)
        markets = adapter.load_markets()
        market = markets.get(request.symbol)
        if market is None:
            raise ValidationError(f"unknown symbol {request.symbol!r} on {account.exchange}"
                                  f" (e.g. {', '.join(sorted(markets)[:5])})")
        if not market.active:
            raise ValidationError(f"market {request.symbol} is not active on {account.exchange}")
        request = normalize(request, market)
        ticker, ticker_error = None, None
        try:
            ticker = adapter.fetch_ticker(request.symbol)
        except VenueError as exc:
            ticker_error = str(exc)
        check_protective_prices(request, ticker)
        return Prepared(request, market, ticker, ticker_error, bool(getattr(adapter, "testnet", False)))

    def _context(self, account: Account, prepared: Prepared, *, emergency: bool = False,
                 exclude_order: int | None = None) -> RiskContext:
        return RiskContext(account, prepared.request, market=prepared.market, ticker=prepared.ticker,
                           ticker_error=prepared.ticker_error, venue_testnet=prepared.venue_testnet,
                           installation_state=self.engine.trading.installation_state(), emergency=emergency,
                           exclude_order=exclude_order)

    def _assess(self, context: RiskContext, *, skip_confirmation: bool = False) -> Assessment:
        if context.emergency:
            if not context.request.reduce_only:
                return Assessment([("emergency_stop", Decision.block("emergency orders must be reduce-only"))])
            return Assessment([("emergency_stop", Decision.allow("emergency liquidation (reduce-only)"))])
        return self.engine.risk.evaluate(context, skip_confirmation=skip_confirmation)

    def _admit(self, account_id: int, prepared: Prepared, *, actor: str, reason: str | None, run_id: Any,
               bot: str | None, max_retries: int | None, emergency: bool) -> tuple[Order, Assessment]:
        request = prepared.request
        unlocked = lock_disabled()
        if unlocked:  # test-only: check outside any lock, as a naive implementation would
            context = self._context(Account.get_by_id(account_id), prepared, emergency=emergency)
            assessment = self._assess(context)
            reservation = reservation_for(context) if assessment.verdict is not Verdict.BLOCK else None
        window = _race_window()
        with account_lock(self.engine.db, [account_id]) as tx:
            account = rows.get(Account, account_id)
            if not unlocked:
                context = self._context(account, prepared, emergency=emergency)
                assessment = self._assess(context)
                reservation = reservation_for(context) if assessment.verdict is not Verdict.BLOCK else None
            if window:
                time.sleep(window)
            status = {Verdict.ALLOW: S.PENDING_SUBMIT, Verdict.CONFIRM: S.PENDING_CONFIRMATION,
                      Verdict.BLOCK: S.REJECTED}[assessment.verdict]
            amount, asset = reservation if reservation is not None else (Decimal(0), None)
            now = utcnow()
            order = rows.create(
                Order, account=account_id, client_order_id=request.client_order_id or new_client_order_id(),
                run=run_id, bot=bot, reason=reason, market=request.market, symbol=request.symbol, side=request.side,
                type=request.type, price=request.price, quantity=request.quantity, status=status,
                leverage=request.leverage, reduce_only=request.reduce_only, risk_verdict=assessment.verdict.value,
                risk_details=assessment.details(), reserved_amount=amount, reserved_asset=asset,
                max_retries=3 if max_retries is None else max_retries, stop_loss=request.stop_loss,
                take_profit=request.take_profit, created_by=actor, created_at=now, updated_at=now,
                error_code="risk" if status is S.REJECTED else None,
                error_message=assessment.reason() if status is S.REJECTED else None,
            )
            if asset == account.quote_currency and amount:
                account.frozen_cash = account.frozen_cash + amount
                rows.save(account, only_dirty=True)
            self._record_event(tx, order, None, status, actor, {"risk": assessment.verdict.value}, account.name)
            action = {S.REJECTED: "order_rejected", S.PENDING_CONFIRMATION: "confirmation_requested"}.get(status, "none")
            self.engine.risk.record(context, assessment, order, action=action, result=status.value)
            tx.audit(actor, "order.place", f"order:{order.client_order_id}", {
                "order": order.id, "account": account.name, "symbol": order.symbol, "side": order.side.value,
                "type": order.type.value, "quantity": plain(order.quantity),
                "price": plain(order.price) if order.price is not None else None, "status": status.value,
                "risk": assessment.verdict.value, "reason": reason,
            })
            if status is S.REJECTED:
                snapshot = order_dict(order, account.name)
                combined = assessment.combined()
                tx.after_commit(lambda: self.engine.plugins.fire("on_risk_rejection", order=snapshot, decision=combined))
        return order, assessment

    def _after_admit(self, order: Order, assessment: Assessment, account: Account) -> Order:
        if order.status is S.REJECTED:
            stops = assessment.wants_emergency_stop()
            if stops:
                account = Account.get_by_id(order.account_id)
                self.engine.trading.emergency_stop(account.name, reason=f"automatic: {assessment.reason()}",
                                                   source=f"risk:{stops[0]}")
            if any(name in STATE_RULES for name, _ in assessment.blocks):
                raise EmergencyStopActive(f"order {order.id} not sent: {assessment.reason()}", order_id=order.id)
            raise RiskRejected(f"order {order.id} not sent: {assessment.reason()}", order_id=order.id)
        if order.status is S.PENDING_CONFIRMATION:
            raise ConfirmationRequired(
                f"order {order.id} waits for confirmation ({assessment.reason()}): "
                f"run `tradeguard order confirm {order.id} --by NAME`", order_id=order.id)
        return self._submit_admitted(order, account)

    # -- sending ---------------------------------------------------------------------------

    @in_engine_db
    def submit(self, order_id: int, *, actor: str = "venue") -> Order:
        """Send a PENDING_SUBMIT order to its venue (at most once) and record the answer."""
        order = rows.get(Order, order_id)
        if order.status is not S.PENDING_SUBMIT:
            return order
        account = rows.get(Account, order.account_id)  # fresh: a stop may have landed since the commit
        return self._send(order, account, account.trading_state, actor=actor)

    def _submit_admitted(self, order: Order, account: Account) -> Order:
        """`submit` of the order `place` just committed: *order* is that row as written and *account* the
        row `place` read, so only what another process may have changed since is read again — the order's
        status and the account's trading state (one narrow query instead of two full rows)."""
        db = self.engine.db
        fresh = db.execute_sql(_STATUS_AND_STATE.format(p=db.param, l=db.quote[0], r=db.quote[-1]),
                               (order.id,)).fetchone()
        if fresh is None or fresh[0] != S.PENDING_SUBMIT.value:
            return rows.get(Order, order.id)
        return self._send(order, account, TradingState(fresh[1]), actor="venue")

    def _send(self, order: Order, account: Account, account_state: TradingState, *, actor: str) -> Order:
        """Send *order* unless the stricter of *account_state* and the installation's state forbids it."""
        state = stricter(account_state, self.engine.trading.installation_state())
        if state is TradingState.HALTED and not _is_emergency(order):
            return self._set_status(order.id, S.CANCELED, "system", {"reason": "trading state HALTED before send"},
                                    error=("halted", "the account was halted before the order was sent"))
        adapter = self.venues.for_account(account)
        if account.mode is TradingMode.PAPER and not getattr(adapter, "simulated", False):
            raise TradeguardError(f"refusing to send a PAPER order of {account.name!r} to a real venue")
        request = venue_request(order, adapter, account.name)
        attempt = 0
        while True:
            try:
                venue_order = adapter.create_order(request, order.client_order_id)
                break
            except VenueUnavailable as exc:
                found = self._lookup_after_unknown(adapter, order, exc)
                if found is not None:
                    venue_order = found
                    break
                attempt += 1
                self._note_retry(order.id, attempt, exc)
                if attempt > order.max_retries:
                    self._set_status(order.id, S.FAILED, actor, {"attempts": attempt},
                                     error=("venue_unavailable", f"not accepted after {attempt} attempts: {exc}"))
                    raise VenueUnavailable(f"order {order.id} failed: the venue did not accept it after "
                                           f"{attempt} attempts ({exc})") from None
                time.sleep(self.retry_backoff * (2 ** (attempt - 1)))
            except VenueRejected as exc:
                if attempt:  # a retry refused (e.g. duplicate client id): the first attempt may have landed late
                    try:
                        late = adapter.fetch_order_by_client_id(order.symbol, order.client_order_id)
                    except VenueError:
                        late = None
                    if late is not None:
                        venue_order = late
                        break
                self._set_status(order.id, S.REJECTED, actor, {"venue_code": exc.code},
                                 error=(exc.code or "venue_rejected", str(exc)))
                raise VenueRejected(f"order {order.id} rejected by {account.exchange}: {exc}", code=exc.code) from None
            except CredentialsError as exc:
                self._set_status(order.id, S.FAILED, actor, {}, error=("credentials", str(exc)))
                raise
        return self.apply_venue_order(order.id, venue_order, actor=actor, adapter=adapter, _read=order)

    def _lookup_after_unknown(self, adapter: Any, order: Order, first: VenueUnavailable) -> VenueOrder | None:
        """After an unknown outcome: did the order arrive? Retries the lookup; raises if it stays unknown."""
        for attempt in range(order.max_retries + 1):
            try:
                return adapter.fetch_order_by_client_id(order.symbol, order.client_order_id)
            except VenueUnavailable as exc:
                if attempt >= order.max_retries:
                    self._note_retry(order.id, order.retry_count, exc, unknown=True)
                    raise VenueUnavailable(
                        f"order {order.id}: the venue did not answer ({exc}); the order may or may not be there — "
                        "it stays PENDING_SUBMIT until reconciliation asks the venue") from None
                time.sleep(self.retry_backoff * (2 ** attempt))
        return None

    def _note_retry(self, order_id: int, attempt: int, exc: Exception, *, unknown: bool = False) -> None:
        order = Order.get_by_id(order_id)
        with account_lock(self.engine.db, [order.account_id]) as tx:
            Order.update(retry_count=attempt, error_code="unknown_outcome" if unknown else "venue_unavailable",
                         error_message=str(exc), updated_at=utcnow()).where(Order.id == order_id).execute()
            tx.audit("venue", "order.retry", f"order:{order.client_order_id}",
                     {"order": order_id, "attempt": attempt, "error": str(exc)})

    @in_engine_db
    def apply_venue_order(self, order_id: int, venue_order: VenueOrder, *, actor: str = "venue",
                          adapter: Any = None, _read: Order | None = None) -> Order:
        """Bring an order up to date with the venue's view: fills, status, ids; create or cancel SL/TP children."""
        # outside the lock only to decide whether trades must be fetched (submit passes the row it just read);
        # the row is read again under the lock below
        order = _read if _read is not None and _read.id == order_id else rows.get(Order, order_id)
        fills = list(venue_order.fills)
        if venue_order.filled > order.filled_quantity and sum((f.quantity for f in fills), Decimal(0)) < venue_order.filled:
            fills = self._missing_fills(order, venue_order, fills, adapter)
        follow_up: list[tuple[str, int]] = []
        with account_lock(self.engine.db, [order.account_id]) as tx:
            order = rows.get(Order, order_id)
            account = rows.get(Account, order.account_id)
            if venue_order.exchange_order_id and not order.exchange_order_id:
                order.exchange_order_id = venue_order.exchange_order_id
            order.exchange_status = venue_order.exchange_status or venue_order.status.value
            if order.submitted_at is None:
                order.submitted_at = utcnow()
            before = order.filled_quantity
            new_trades = []
            for fill in fills:
                trade = ledger.apply_fill(account, order, fill)
                if trade is not None:
                    new_trades.append(trade)
                    tx.audit(actor, "trade.add", f"order:{order.client_order_id}", {
                        "order": order.id, "trade_id": fill.trade_id, "side": fill.side.value,
                        "price": plain(fill.price), "quantity": plain(fill.quantity), "fee": plain(fill.fee)})
            new_status = derive_status(order, venue_order)
            if new_status is not order.status or (new_status is S.PARTIALLY_FILLED and order.filled_quantity != before):
                old = order.status
                self._transition(tx, account, order, new_status, actor, {"filled": plain(order.filled_quantity)})
                if new_status is S.FILLED and (order.stop_loss or order.take_profit) and old is not S.FILLED:
                    follow_up += [("submit", child.id) for child in self._create_children(tx, account, order)]
                if order.parent_id and new_status is S.FILLED:
                    follow_up += [("cancel", sibling.id) for sibling in _siblings(order)]
            order.updated_at = utcnow()
            rows.save(order, only_dirty=True)  # every change above is an assignment
            rows.save(account, only_dirty=True)
        for action, child_id in follow_up:
            try:
                if action == "submit":
                    self.submit(child_id)
                else:
                    self.cancel(child_id, actor="system", reason="OCO: the other protective order filled")
            except TradeguardError as exc:
                log.error("protective order %s: %s failed: %s", child_id, action, exc)
        # without follow-ups nothing else touched the row since the commit: it is what was just saved
        return rows.get(Order, order_id) if follow_up else order

    def _missing_fills(self, order: Order, venue_order: VenueOrder, fills: list[Fill], adapter: Any) -> list[Fill]:
        """The venue reported fills without trade details: fetch them, or synthesize the difference."""
        known = {f.trade_id for f in fills}
        if adapter is not None:
            try:
                for fill in adapter.fetch_my_trades(order.symbol, since=order.created_at - timedelta(minutes=1)):
                    ids = {order.client_order_id, order.exchange_order_id, venue_order.exchange_order_id} - {None}
                    if fill.trade_id not in known and (fill.exchange_order_id in ids or fill.client_order_id in ids):
                        fills.append(fill)
                        known.add(fill.trade_id)
            except VenueError as exc:
                log.warning("order %s: could not fetch its trades: %s", order.id, exc)
        covered = sum((f.quantity for f in fills), Decimal(0))
        if venue_order.filled > covered and venue_order.average_price:
            ref = venue_order.exchange_order_id or order.client_order_id
            fills.append(Fill(trade_id=f"{ref}:agg:{plain(venue_order.filled)}", symbol=order.symbol,
                              side=order.side, price=venue_order.average_price,
                              quantity=venue_order.filled - covered, timestamp=utcnow(),
                              exchange_order_id=venue_order.exchange_order_id,
                              client_order_id=order.client_order_id))
        return fills

    def _create_children(self, tx: AccountTransaction, account: Account, parent: Order) -> list[Order]:
        """Protective orders for a filled parent: a stop-loss (stop-market) and a take-profit (limit), reduce-only."""
        if Order.select().where(Order.parent == parent.id).exists():
            return []
        children = []
        side = parent.side.opposite
        for kind, trigger in (("stop_loss", parent.stop_loss), ("take_profit", parent.take_profit)):
            if trigger is None:
                continue
            now = utcnow()
            child = Order.create(
                account=account.id, client_order_id=new_client_order_id(), run=parent.run_id, bot=parent.bot,
                reason=f"{kind} of order {parent.id}", market=parent.market, symbol=parent.symbol, side=side,
                type=OrderType.LIMIT if kind == "take_profit" else OrderType.MARKET,
                price=trigger if kind == "take_profit" else None, quantity=parent.filled_quantity,
                status=S.PENDING_SUBMIT, leverage=parent.leverage, reduce_only=True, risk_verdict="allow",
                risk_details={"verdict": "allow", "rules": [], "protective": kind},
                stop_loss=trigger if kind == "stop_loss" else None, parent=parent.id,
                created_by=parent.created_by, created_at=now, updated_at=now,
            )
            self._record_event(tx, child, None, S.PENDING_SUBMIT, "system", {"parent": parent.id, "kind": kind},
                               account.name)
            tx.audit("system", "order.place", f"order:{child.client_order_id}",
                     {"order": child.id, "parent": parent.id, "kind": kind, "price": plain(trigger),
                      "quantity": plain(child.quantity), "status": S.PENDING_SUBMIT.value})
            children.append(child)
        return children

    # -- state changes ---------------------------------------------------------------------

    def _record_event(self, tx: AccountTransaction, order: Order, old: S | None, new: S, actor: str,
                      detail: dict[str, Any], account_name: str) -> None:
        rows.create(OrderEvent, order=order.id, old_status=old.value if old else None, new_status=new.value,
                    actor=actor, detail=detail)
        if not self.engine.plugins.listens("on_order_state_changed"):
            return
        snapshot = order_dict(order, account_name)
        tx.after_commit(lambda: self.engine.plugins.fire(
            "on_order_state_changed", order=snapshot, old_status=old.value if old else None, new_status=new.value))

    def _transition(self, tx: AccountTransaction, account: Account, order: Order, new: S, actor: str,
                    detail: dict[str, Any]) -> None:
        """Move *order* to *new* (checked), release what a final state frees, store and audit it."""
        old = order.status
        check_transition(old, new)
        order.status = new
        order.updated_at = utcnow()
        if new.is_final:
            ledger.release_reservation(account, order)
        self._record_event(tx, order, old, new, actor, detail, account.name)
        tx.audit(actor, "order.state", f"order:{order.client_order_id}",
                 {"order": order.id, "old": old.value, "new": new.value, **detail})

    def _set_status(self, order_id: int, new: S, actor: str, detail: dict[str, Any], *,
                    error: tuple[str, str] | None = None) -> Order:
        order = Order.get_by_id(order_id)
        with account_lock(self.engine.db, [order.account_id]) as tx:
            order = Order.get_by_id(order_id)
            account = Account.get_by_id(order.account_id)
            if order.status is new:
                return order
            if error is not None:
                order.error_code, order.error_message = error[0][:64], error[1]
            self._transition(tx, account, order, new, actor, detail)
            order.save()
            account.save()
        return order

    # -- confirming and cancelling ---------------------------------------------------------

    @in_engine_db
    def confirm(self, order_id: int | str, *, by: str, actor: str | None = None) -> Order:
        """Confirm a PENDING_CONFIRMATION order: re-check the rules (without the confirmation rule) and send it."""
        if not by or not str(by).strip():
            raise ValidationError("--by: say who confirms the order")
        order = self.get(order_id)
        if order.status is not S.PENDING_CONFIRMATION:
            raise ValidationError(f"order {order.id} is {order.status.value}, not waiting for confirmation")
        account = Account.get_by_id(order.account_id)
        request = OrderRequest(account=account.name, symbol=order.symbol, side=order.side, quantity=order.quantity,
                               type=order.type, price=order.price, stop_loss=order.stop_loss,
                               take_profit=order.take_profit, leverage=order.leverage, reduce_only=order.reduce_only,
                               market=order.market)
        adapter = self.venues.for_account(account)
        prepared_market = adapter.load_markets().get(order.symbol)
        ticker, ticker_error = None, None
        try:
            ticker = adapter.fetch_ticker(order.symbol)
        except VenueError as exc:
            ticker_error = str(exc)
        prepared = Prepared(request, prepared_market, ticker, ticker_error, bool(getattr(adapter, "testnet", False)))
        actor = actor or str(by)
        with account_lock(self.engine.db, [account.id]) as tx:
            order = Order.get_by_id(order.id)
            account = Account.get_by_id(account.id)
            if order.status is not S.PENDING_CONFIRMATION:
                raise ValidationError(f"order {order.id} is {order.status.value}, not waiting for confirmation")
            context = self._context(account, prepared, exclude_order=order.id)
            assessment = self._assess(context, skip_confirmation=True)
            if assessment.verdict is Verdict.BLOCK:
                order.error_code, order.error_message = "risk", assessment.reason()
                self._transition(tx, account, order, S.REJECTED, actor, {"confirmed_by": by, "risk": "block"})
                self.engine.risk.record(context, assessment, order, action="order_rejected", result="REJECTED")
            else:
                order.confirmed_at, order.confirmed_by = utcnow(), str(by)
                self._transition(tx, account, order, S.PENDING_SUBMIT, actor, {"confirmed_by": by})
            order.risk_details = {**assessment.details(), "confirmed_by": str(by)}
            order.save()
            account.save()
        if order.status is S.REJECTED:
            raise RiskRejected(f"order {order.id} not sent: {assessment.reason()}", order_id=order.id)
        return self.submit(order.id)

    @in_engine_db
    def cancel(self, order_id: int | str, *, actor: str = "api", reason: str | None = None) -> Order:
        """Cancel an order (at the venue if it may be there) and its protective children. Cancels always pass.

        Cancelling a filled parent cancels its open stop-loss/take-profit children.
        """
        order = self.get(order_id)
        if order.status.is_final:
            active_children = Order.select(Order.id).where(
                (Order.parent == order.id) & (Order.status.in_(list(ACTIVE_STATUSES)))).exists()
            if not active_children:
                raise ValidationError(f"order {order.id} is already {order.status.value}")
            self._cancel_children(order, actor)  # a filled parent: cancelling it removes its protection
            return order
        detail = {"reason": reason} if reason else {}
        if order.status is S.PENDING_CONFIRMATION:
            result = self._set_status(order.id, S.CANCELED, actor, detail)
        else:
            account = Account.get_by_id(order.account_id)
            adapter = self.venues.for_account(account)
            try:
                venue_order = adapter.cancel_order(order.symbol, order.exchange_order_id, order.client_order_id)
            except VenueRejected as exc:
                found = self._fetch(adapter, order)
                if found is None and order.status is S.PENDING_SUBMIT:
                    if utcnow() - order.created_at < RECONCILE_GRACE:
                        # it may be on its way right now (another process between commit and send)
                        raise VenueUnavailable(f"order {order.id} is being sent; cancel it again in a minute "
                                               "(reconciliation cancels it on a HALTED account)") from None
                    result = self._set_status(order.id, S.CANCELED, actor, {**detail, "venue": "never arrived"})
                    self._cancel_children(result, actor)
                    return result
                if found is None:
                    raise VenueRejected(f"order {order.id}: cancel refused by {account.exchange}: {exc}", code=exc.code) from None
                venue_order = found
            result = self.apply_venue_order(order.id, venue_order, actor=actor, adapter=adapter)
            if not result.status.is_final:
                raise VenueRejected(f"order {order.id} is still {result.status.value} at {account.exchange}")
        self._cancel_children(result, actor)
        return result

    def _cancel_children(self, parent: Order, actor: str) -> None:
        for child in Order.select().where((Order.parent == parent.id) & (Order.status.in_(list(ACTIVE_STATUSES)))):
            try:
                self.cancel(child.id, actor=actor, reason=f"parent order {parent.id} cancelled")
            except TradeguardError as exc:
                log.error("cancelling child order %s failed: %s", child.id, exc)

    @staticmethod
    def _fetch(adapter: Any, order: Order) -> VenueOrder | None:
        if order.exchange_order_id:
            try:
                return adapter.fetch_order(order.symbol, order.exchange_order_id)
            except VenueRejected:
                pass
        return adapter.fetch_order_by_client_id(order.symbol, order.client_order_id)

    # -- reconciliation --------------------------------------------------------------------

    @in_engine_db
    def accounts_to_reconcile(self) -> list[int]:
        """Ids of accounts with orders the venue may still act on (one indexed query)."""
        query = Order.select(Order.account).where(Order.status.in_(list(LIVE_STATUSES))).distinct()
        return sorted({row.account_id for row in query})

    @in_engine_db
    def reconcile(self, account: str) -> dict[str, Any]:
        """Ask the venue about every order left open and bring the database up to date.

        PENDING_SUBMIT orders are looked up by client order id: found ones take
        the venue's state; ones the venue never received (older than
        `RECONCILE_GRACE`) become FAILED — they are never re-sent late. Fills
        that happened while tradeguard was down are ingested once; open
        orders and trades the venue has that the database lacks are imported
        and flagged ``imported``. On a HALTED account, open orders are cancelled.
        """
        row = self.engine.accounts.get(account, include_archived=True)
        adapter = self.venues.for_account(row)
        report: dict[str, Any] = {"account": account, "checked": 0, "updated": 0, "failed": 0, "imported_orders": 0,
                                  "imported_fills": 0, "cancelled": 0, "errors": []}
        orders = list(Order.select().where((Order.account == row.id) & (Order.status.in_(list(LIVE_STATUSES)))))
        symbols = {o.symbol for o in orders}
        for order in orders:
            report["checked"] += 1
            try:
                found = self._fetch(adapter, order)
            except VenueError as exc:
                report["errors"].append(f"order {order.id}: {exc}")
                continue
            if found is None:
                if order.status is S.PENDING_SUBMIT and utcnow() - order.created_at > RECONCILE_GRACE:
                    self._set_status(order.id, S.FAILED, "reconcile", {"venue": "not found"},
                                     error=("not_sent", "the venue never received it (found at reconciliation)"))
                    report["failed"] += 1
                elif order.status is not S.PENDING_SUBMIT:
                    report["errors"].append(f"order {order.id}: the venue does not know it")
                continue
            before = (order.status, order.filled_quantity)
            try:
                updated = self.apply_venue_order(order.id, found, actor="reconcile", adapter=adapter)
            except TradeguardError as exc:
                log.error("reconcile: order %s: %s", order.id, exc)
                report["errors"].append(f"order {order.id}: {exc}")
                continue
            if (updated.status, updated.filled_quantity) != before:
                report["updated"] += 1
        report["imported_orders"] += self._import_open_orders(row, adapter, report)
        for symbol in sorted(symbols):
            report["imported_fills"] += self._import_fills(row, adapter, symbol, report)
        if self.engine.trading.effective_state(row) is TradingState.HALTED:
            cancelled, failed = self.cancel_all(row.name, actor="reconcile", reason="account HALTED")
            report["cancelled"] += cancelled
            if failed:
                report["errors"].append(f"{failed} order(s) could not be cancelled")
        changed = any(report[k] for k in ("updated", "failed", "imported_orders", "imported_fills", "cancelled"))
        if changed or report["errors"]:  # a no-op reconciliation (every CLI start) leaves no trace
            with account_lock(self.engine.db, [row.id]) as tx:
                tx.audit("reconcile", "account.reconcile", f"account:{account}",
                         {k: v for k, v in report.items() if k != "errors"} | {"errors": len(report["errors"])})
        return report

    def _import_open_orders(self, account: Account, adapter: Any, report: dict[str, Any]) -> int:
        try:
            venue_orders = adapter.fetch_open_orders()
        except (VenueError, TypeError) as exc:
            report["errors"].append(f"open orders: {exc}")
            return 0
        count = 0
        for vo in venue_orders:
            mine = Order.account == account.id
            known = vo.client_order_id and Order.select(Order.id).where(
                mine & (Order.client_order_id == vo.client_order_id)).exists()
            known = known or (vo.exchange_order_id and Order.select(Order.id).where(
                mine & (Order.exchange_order_id == vo.exchange_order_id)).exists())
            if known:
                continue
            client_id = vo.client_order_id
            if not client_id or Order.select(Order.id).where(Order.client_order_id == client_id).exists():
                # client order ids are unique across accounts: another account's id cannot be reused here
                client_id = f"venue-{account.id}-{vo.exchange_order_id}"[:64]
            with account_lock(self.engine.db, [account.id]) as tx:
                now = utcnow()
                order = Order.create(
                    account=account.id, client_order_id=client_id,
                    exchange_order_id=vo.exchange_order_id, symbol=vo.symbol, side=vo.side, type=vo.type,
                    price=vo.price, quantity=vo.quantity, status=S.OPEN, imported=True, created_by="venue",
                    reason="found at the venue, not placed through tradeguard", created_at=now, updated_at=now)
                self._record_event(tx, order, None, S.OPEN, "reconcile", {"imported": True}, account.name)
                tx.audit("reconcile", "order.import", f"order:{order.client_order_id}", {"order": order.id})
            count += 1
        return count

    def _import_fills(self, account: Account, adapter: Any, symbol: str, report: dict[str, Any]) -> int:
        try:
            fills = adapter.fetch_my_trades(symbol)
        except VenueError as exc:
            report["errors"].append(f"trades {symbol}: {exc}")
            return 0
        count = 0
        for fill in fills:
            if Trade.select(Trade.id).where((Trade.account == account.id) & (Trade.exchange_trade_id == fill.trade_id)).exists():
                continue
            order = None
            if fill.client_order_id:
                order = Order.get_or_none((Order.account == account.id) & (Order.client_order_id == fill.client_order_id))
            if order is None and fill.exchange_order_id:
                order = Order.get_or_none((Order.account == account.id) & (Order.exchange_order_id == fill.exchange_order_id))
            if order is not None and not order.imported:
                continue  # belongs to an order tradeguard follows: ingested through the order's own update
            with account_lock(self.engine.db, [account.id]) as tx:
                locked = Account.get_by_id(account.id)
                trade = ledger.apply_fill(locked, None, fill, imported=True)
                if trade is not None:
                    locked.save()
                    tx.audit("reconcile", "trade.import", f"account:{account.name}",
                             {"trade_id": fill.trade_id, "symbol": fill.symbol, "quantity": plain(fill.quantity)})
                    count += 1
        return count

    # -- bulk ------------------------------------------------------------------------------

    def cancel_all(self, account: str, *, actor: str, reason: str) -> tuple[int, int]:
        """Cancel every active order of *account*; return (cancelled, failed)."""
        row = self.engine.accounts.get(account, include_archived=True)
        cancelled = failed = 0
        for order in list(Order.select().where((Order.account == row.id) & (Order.status.in_(list(ACTIVE_STATUSES))))
                          .order_by(Order.id)):
            fresh = Order.get_by_id(order.id)
            if fresh.status.is_final:
                continue
            try:
                self.cancel(order.id, actor=actor, reason=reason)
                cancelled += 1
            except TradeguardError as exc:
                failed += 1
                log.error("cancelling order %s failed: %s", order.id, exc)
        return cancelled, failed


# -- helpers ---------------------------------------------------------------------------------


def _is_emergency(order: Order) -> bool:
    return bool(order.reduce_only and (order.created_by or "").startswith("emergency"))


def _siblings(order: Order) -> list[Order]:
    return list(Order.select().where((Order.parent == order.parent_id) & (Order.id != order.id)
                                     & (Order.status.in_(list(ACTIVE_STATUSES)))))


def normalize(request: OrderRequest, market: Market) -> OrderRequest:
    """Round quantity and price to the market's precision (down); reject below its minimums."""
    quantity, price = request.quantity, request.price
    if market.amount_step:
        quantity = (quantity // market.amount_step) * market.amount_step
    if market.price_step and price is not None:
        price = (price / market.price_step).to_integral_value(rounding=decimal.ROUND_HALF_EVEN) * market.price_step
    if quantity <= 0 or (market.min_amount is not None and quantity < market.min_amount):
        raise ValidationError(f"quantity {plain(request.quantity)} is below the minimum {plain(market.min_amount or market.amount_step)} for {market.symbol}")
    if price is not None and price <= 0:
        raise ValidationError(f"price {plain(request.price)} rounds to zero at tick {plain(market.price_step)}")
    if market.min_notional is not None and price is not None and quantity * price < market.min_notional:
        raise ValidationError(f"order value {plain(quantity * price)} is below the minimum {plain(market.min_notional)} for {market.symbol}")
    if quantity == request.quantity and price == request.price:
        return request
    return dataclasses.replace(request, quantity=quantity, price=price)


def check_protective_prices(request: OrderRequest, ticker: Ticker | None) -> None:
    """Stop-loss below and take-profit above the entry for a buy (reversed for a sell)."""
    if request.stop_loss is None and request.take_profit is None:
        return
    reference = request.price if request.price is not None else (ticker.last if ticker else None)
    if reference is None:
        raise ValidationError("cannot check stop-loss/take-profit: no price (give --price or wait for a ticker)")
    buy = request.side is Side.BUY
    if request.stop_loss is not None and (request.stop_loss >= reference if buy else request.stop_loss <= reference):
        raise ValidationError(f"stop_loss {plain(request.stop_loss)} must be {'below' if buy else 'above'} "
                              f"the entry price {plain(reference)} for a {request.side.value}")
    if request.take_profit is not None and (request.take_profit <= reference if buy else request.take_profit >= reference):
        raise ValidationError(f"take_profit {plain(request.take_profit)} must be {'above' if buy else 'below'} "
                              f"the entry price {plain(reference)} for a {request.side.value}")


def reservation_for(context: RiskContext) -> tuple[Decimal, str | None]:
    """What an order sets aside while open: (amount, asset).

    Reduce-only orders reserve nothing. Spot buys reserve quote cash (limit
    price, or the ticker price plus the account's slippage tolerance for a
    market order); spot sells reserve the base asset; leveraged or derivative
    orders reserve margin (notional / leverage) in quote cash.
    """
    request, account = context.request, context.account
    if request.reduce_only:
        return Decimal(0), None
    with decimal.localcontext(ledger.CONTEXT):
        price = request.price if request.price is not None else context.mark_price * (1 + account.slippage_tolerance)
        notional = request.quantity * price
        if request.market is MarketKind.SPOT and request.leverage == 1:
            if request.side is Side.BUY:
                return notional, account.quote_currency
            return request.quantity, request.base
        return notional / request.leverage, account.quote_currency


_STATUS_AND_STATE = ("SELECT o.status, a.trading_state FROM {l}order{r} o JOIN account a ON a.id = o.account_id "
                     "WHERE o.id = {p}")


def venue_request(order: Order, adapter: Any, account_name: str) -> OrderRequest:
    """The request sent to the venue: SL/TP are stripped (they become child orders) unless the venue has native OCO;
    a protective stop child keeps ``stop_loss`` (a stop-market order triggered there)."""
    native = CAP_NATIVE_OCO in getattr(adapter, "capabilities", frozenset())
    keep_protective = native or order.parent_id is not None
    return OrderRequest(
        account=account_name, symbol=order.symbol, side=order.side, quantity=order.quantity, type=order.type,
        price=order.price, stop_loss=order.stop_loss if keep_protective else None,
        take_profit=order.take_profit if native else None, leverage=order.leverage, reduce_only=order.reduce_only,
        client_order_id=order.client_order_id, market=order.market)


def derive_status(order: Order, venue_order: VenueOrder) -> S:
    """The order's next state from the venue's report (never backwards)."""
    status = venue_order.status
    if status is S.PENDING_SUBMIT or status is S.PENDING_CONFIRMATION:
        status = S.OPEN
    if status in (S.REJECTED, S.FAILED) and order.status is not S.PENDING_SUBMIT:
        status = S.CANCELED  # the venue dropped an order it had accepted
    if order.filled_quantity >= order.quantity:
        return S.FILLED
    if status is S.FILLED:
        return S.FILLED
    if status in (S.OPEN, S.PARTIALLY_FILLED):
        return S.PARTIALLY_FILLED if order.filled_quantity > 0 else (S.OPEN if order.status is not S.PARTIALLY_FILLED else order.status)
    return status
