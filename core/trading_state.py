"""Trading state per account and for the whole installation: ACTIVE,
REDUCING (only exposure-reducing orders; cancels always pass) or HALTED.

The account's state is ``account.trading_state``; the installation's is the
``trading_state`` row of the ``setting`` table. Both survive restarts; the
stricter of the two applies. `emergency_stop` sets HALTED *first* (committed
before anything else happens, so nothing new leaves even if the rest fails),
then cancels open orders at the venue, optionally liquidates positions with
reduce-only market orders, and records an `EmergencyEvent`. Only an explicit,
attributed `resume` sets ACTIVE again.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

from tradeguard.clock import isoformat, utcnow
from tradeguard.errors import TradeguardError, ValidationError
from tradeguard.money import plain
from tradeguard.orders.ledger import CONTEXT
from tradeguard.orders.locking import account_lock
from tradeguard.service import Service, in_engine_db
from tradeguard.storage import rows
from tradeguard.storage.models import Account, EmergencyEvent, Order, Position, Setting, Trade
from tradeguard.types import Side, TradingState

log = logging.getLogger("tradeguard.state")

SETTING_KEY = "trading_state"
_ORDER = [TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]


def stricter(a: TradingState, b: TradingState) -> TradingState:
    return max(a, b, key=_ORDER.index)


def event_dict(event: EmergencyEvent, account_name: str | None) -> dict[str, Any]:
    return {
        "id": event.id, "account": account_name, "event_type": event.event_type, "reason": event.reason,
        "source": event.source, "orders_cancelled": event.orders_cancelled,
        "orders_cancel_failed": event.orders_cancel_failed, "positions_liquidated": event.positions_liquidated,
        "affected_accounts": event.affected_accounts, "financial_impact": plain(event.financial_impact),
        "resolved": event.resolved, "resolved_by": event.resolved_by, "resolution_notes": event.resolution_notes,
        "created_at": event.created_at.isoformat(),
        "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
    }


class Trading(Service):
    """``engine.trading``: read and change trading states; emergency stop and resume."""

    #: Attempts to cancel each order during a stop (with backoff) before reporting it as failed.
    cancel_attempts = 3
    cancel_backoff = 0.5

    # -- reading ---------------------------------------------------------------------------

    @in_engine_db
    def installation_state(self) -> TradingState:
        """The installation-wide state (ACTIVE when never set)."""
        row = rows.get_or_none(Setting, SETTING_KEY)  # pre-built SQL: read on every order
        if row is None or not isinstance(row.value, dict):
            return TradingState.ACTIVE
        return TradingState(row.value.get("state", "ACTIVE"))

    @in_engine_db
    def effective_state(self, account: Account | str) -> TradingState:
        """The stricter of the account's and the installation's state."""
        if isinstance(account, str):
            account = self.engine.accounts.get(account, include_archived=True)
        else:
            account = Account.get_by_id(account.id)
        return stricter(account.trading_state, self.installation_state())

    @in_engine_db
    def status(self, account: str | None = None) -> dict[str, Any]:
        """The installation's state and each account's (or one account's), with the open emergency events."""
        row = Setting.get_or_none(Setting.key == SETTING_KEY)
        installation = dict(row.value) if row is not None and isinstance(row.value, dict) else {"state": "ACTIVE"}
        accounts = [self.engine.accounts.get(account)] if account else self.engine.accounts.list()
        events = (EmergencyEvent.select().where(EmergencyEvent.resolved == False)  # noqa: E712
                  .order_by(EmergencyEvent.id))
        names = {a.id: a.name for a in Account.select(Account.id, Account.name)}
        return {
            "installation": installation,
            "accounts": [{"account": a.name, "state": a.trading_state.value,
                          "effective": stricter(a.trading_state, TradingState(installation["state"])).value}
                         for a in accounts],
            "open_events": [event_dict(e, names.get(e.account_id)) for e in events
                            if account is None or e.account_id in (None, accounts[0].id)],
        }

    # -- changing --------------------------------------------------------------------------

    def _targets(self, account: str | None) -> list[Account]:
        if account is None:
            return self.engine.accounts.list()
        return [self.engine.accounts.get(account)]

    def _set(self, account: str | None, state: TradingState, actor: str, reason: str) -> list[Account]:
        """Store *state* (one transaction, accounts locked in ascending id order, audit last)."""
        targets = self._targets(account)
        with account_lock(self.engine.db, [a.id for a in targets]) as tx:
            if account is None:
                value = {"state": state.value, "reason": reason, "by": actor, "since": isoformat(utcnow())}
                Setting.insert(key=SETTING_KEY, value=value, updated_at=utcnow()).on_conflict(
                    conflict_target=[Setting.key], update={Setting.value: value, Setting.updated_at: utcnow()}).execute()
                tx.audit(actor, "state.set", "installation", {"state": state.value, "reason": reason})
            else:
                row = Account.get_by_id(targets[0].id)
                old = row.trading_state
                Account.update(trading_state=state, updated_at=utcnow()).where(Account.id == row.id).execute()
                tx.audit(actor, "state.set", f"account:{row.name}", {"old": old.value, "state": state.value,
                                                                       "reason": reason})
        return targets

    @in_engine_db
    def emergency_stop(self, account: str | None = None, *, reason: str, source: str = "cli",
                       cancel_orders: bool = True, liquidate: bool = False) -> dict[str, Any]:
        """HALT *account* (None: the installation) and clean up; return the recorded event.

        The HALTED flag is committed before any venue call. Orders that
        could not be cancelled are retried (``cancel_attempts``) and then
        reported in ``orders_cancel_failed``; reconciliation retries them.
        """
        if not reason or not str(reason).strip():
            raise ValidationError("--reason: say why trading stops")
        targets = self._set(account, TradingState.HALTED, source, reason)
        cancelled = cancel_failed = liquidated = 0
        impact = Decimal(0)
        errors: list[str] = []
        for target in targets:
            if cancel_orders:
                c, f = self._cancel_with_retries(target.name, reason, errors)
                cancelled += c
                cancel_failed += f
            if liquidate:
                n, pnl = self._liquidate(target, reason, errors)
                liquidated += n
                impact += pnl
        with account_lock(self.engine.db, [t.id for t in targets]) as tx:
            event = EmergencyEvent.create(
                account=targets[0].id if account is not None else None, event_type="HALT", reason=reason,
                source=source, orders_cancelled=cancelled, orders_cancel_failed=cancel_failed,
                positions_liquidated=liquidated, affected_accounts=len(targets), financial_impact=impact)
            tx.audit(source, "emergency.stop", f"account:{account}" if account else "installation",
                     {"event": event.id, "reason": reason, "cancelled": cancelled, "cancel_failed": cancel_failed,
                      "liquidated": liquidated, "impact": plain(impact)})
        data = event_dict(event, account) | {"errors": errors}
        self.engine.plugins.fire("on_emergency_stop", account=account, event=data)
        return data

    def _cancel_with_retries(self, account: str, reason: str, errors: list[str]) -> tuple[int, int]:
        """Cancel every active order; failures are retried in up to ``cancel_attempts`` passes with backoff."""
        from tradeguard.orders.lifecycle import ACTIVE_STATUSES

        row = self.engine.accounts.get(account)
        pending = [o.id for o in Order.select(Order.id).where(
            (Order.account == row.id) & (Order.status.in_(list(ACTIVE_STATUSES)))).order_by(Order.id)]
        cancelled = 0
        last_error: dict[int, str] = {}
        for attempt in range(self.cancel_attempts):
            if attempt:
                time.sleep(self.cancel_backoff * (2 ** (attempt - 1)))
            failed = []
            for order_id in pending:
                if Order.get_by_id(order_id).status.is_final:
                    continue
                try:
                    self.engine.orders.cancel(order_id, actor="emergency", reason=f"emergency stop: {reason}")
                    cancelled += 1
                except TradeguardError as exc:
                    failed.append(order_id)
                    last_error[order_id] = str(exc)
            pending = failed
            if not pending:
                break
        errors.extend(f"order {order_id}: {last_error[order_id]}" for order_id in pending)
        return cancelled, len(pending)

    def _liquidate(self, account: Account, reason: str, errors: list[str]) -> tuple[int, Decimal]:
        count, impact = 0, Decimal(0)
        for position in Position.select().where((Position.account == account.id) & (Position.quantity != 0)):
            side = Side.SELL if position.quantity > 0 else Side.BUY
            try:
                order = self.engine.orders.place(account.name, position.symbol, side, abs(position.quantity),
                                                 reduce_only=True, actor="emergency", market=position.market,
                                                 reason=f"emergency liquidation: {reason}", _emergency=True)
            except TradeguardError as exc:
                errors.append(f"liquidate {position.symbol}: {exc}")
                continue
            count += 1
            with __import__("decimal").localcontext(CONTEXT):
                for trade in Trade.select().where(Trade.order == order.id):
                    impact += trade.realized_pnl - trade.fee
        return count, impact

    @in_engine_db
    def reduce(self, account: str | None = None, *, reason: str = "", source: str = "cli") -> dict[str, Any]:
        """Set REDUCING: only orders that reduce exposure (and cancels) pass."""
        reason = reason or "reduce only"
        targets = self._set(account, TradingState.REDUCING, source, reason)
        with account_lock(self.engine.db, [t.id for t in targets]) as tx:
            event = EmergencyEvent.create(account=targets[0].id if account is not None else None, event_type="REDUCE",
                                          reason=reason, source=source, affected_accounts=len(targets))
            tx.audit(source, "emergency.reduce", f"account:{account}" if account else "installation",
                     {"event": event.id, "reason": reason})
        return event_dict(event, account)

    @in_engine_db
    def resume(self, account: str | None = None, *, by: str, notes: str = "") -> dict[str, Any]:
        """Set ACTIVE again and resolve the open emergency events (attributed to *by*)."""
        if not by or not str(by).strip():
            raise ValidationError("--by: say who resumes trading")
        targets = self._targets(account)
        with account_lock(self.engine.db, [a.id for a in targets]) as tx:
            if account is None:
                value = {"state": "ACTIVE", "reason": notes, "by": by, "since": isoformat(utcnow())}
                Setting.insert(key=SETTING_KEY, value=value, updated_at=utcnow()).on_conflict(
                    conflict_target=[Setting.key], update={Setting.value: value, Setting.updated_at: utcnow()}).execute()
                where = EmergencyEvent.account.is_null()
            else:
                Account.update(trading_state=TradingState.ACTIVE, updated_at=utcnow()).where(
                    Account.id == targets[0].id).execute()
                where = EmergencyEvent.account == targets[0].id
            resolved = (EmergencyEvent.update(resolved=True, resolved_at=utcnow(), resolved_by=by,
                                              resolution_notes=notes)
                        .where(where & (EmergencyEvent.resolved == False)).execute())  # noqa: E712
            tx.audit(by, "emergency.resume", f"account:{account}" if account else "installation",
                     {"notes": notes, "resolved_events": resolved})
        self.engine.plugins.fire("on_resume", account=account, by=by, notes=notes)
        return {"account": account, "state": "ACTIVE", "resolved_events": resolved, "by": by, "notes": notes}
