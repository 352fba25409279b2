"""Synchronise accounts with their venues: ``engine.sync(account | None)``.

The venue is the source of truth. One sync of one account:

1. **Fetch** (no database lock held): balances, derivatives positions, open
   orders, recent fills (per symbol where the venue needs one), the venue's
   deposit/withdrawal history where the adapter offers it, and the full
   record of any order a fill mentions that the database lacks.
2. **Reconcile** the orders the database already knows through the order
   path's own reconciliation (`Engine.reconcile`), when it exists.
3. **Apply**, in one transaction holding the account's lock: import and flag
   (``imported=True``) venue orders and fills the database lacks, going
   through the order ledger so positions and cash follow; record deposits
   and withdrawals, and every balance change no fill or transfer explains as
   an ``UNEXPLAINED`` cash flow; write balance snapshots, the account's real
   balance in USD, derivatives positions and position snapshots.
4. **Log** a ``sync_log`` row (type, source, status, balances and positions
   before/after, duration, API calls, error) and fire ``on_sync_finished``.

Many accounts sync concurrently in a bounded thread pool; a failing account
is reported in its own result and never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from peewee import fn

from tradeguard.clock import utcnow
from tradeguard.errors import TradeguardError, ValidationError, VenueError
from tradeguard.money import plain
from tradeguard.protocols import CAP_CASH_FLOWS, CAP_POSITIONS
from tradeguard.service import Service, in_engine_db
from tradeguard.storage.models import (
    Account,
    BalanceSnapshot,
    CashFlow,
    Order,
    OrderEvent,
    Position,
    PositionSnapshot,
    SyncLog,
    Trade,
)
from tradeguard.types import Balance, Fill, MarketKind, OrderStatus, Side, TradingMode, VenueOrder, VenuePosition
from tradeguard.valuation import UsdPricer

log = logging.getLogger("tradeguard.sync")

ZERO = Decimal(0)
#: Default number of accounts synced at once.
DEFAULT_CONCURRENCY = 32
#: Fills are fetched from the last successful sync minus this overlap (duplicates are ignored).
FILL_OVERLAP = timedelta(hours=1)
#: Most unknown orders looked up at the venue per sync (the rest are imported from their fills alone).
MAX_ORDER_LOOKUPS = 50
#: Balance differences smaller than this are rounding, not cash flows.
DUST = Decimal("1e-8")
LIVE_STATUSES = (OrderStatus.PENDING_SUBMIT, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


@dataclass
class SyncResult:
    """What one account's sync did (also the ``on_sync_finished`` payload, with the log row)."""

    account: str
    status: str = "ok"  # "ok" | "failed"
    duration_ms: int = 0
    api_calls: int = 0
    balance_usd: str | None = None
    balances: int = 0
    positions: int = 0
    open_orders: int = 0
    reconciled: int = 0
    imported_orders: int = 0
    imported_fills: int = 0
    cash_flows: int = 0
    unexplained: int = 0
    error: str | None = None
    error_code: str | None = None
    sync_log_id: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> str:
        """One line for the CLI."""
        if not self.ok:
            return f"{self.account}: FAILED {self.error}"
        usd = f"{self.balance_usd} USD" if self.balance_usd is not None else "USD value unknown"
        parts = [f"{self.balances} balances ({usd})", f"{self.open_orders} open orders"]
        if self.positions:
            parts.append(f"{self.positions} positions")
        if self.imported_orders or self.imported_fills:
            parts.append(f"imported {self.imported_orders} orders/{self.imported_fills} fills")
        if self.cash_flows:
            parts.append(f"{self.cash_flows} cash flows ({self.unexplained} unexplained)")
        return f"{self.account}: ok, " + ", ".join(parts) + f" in {self.duration_ms} ms, {self.api_calls} API calls"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _VenueState:
    """Everything fetched from the venue for one account, before anything is written."""

    balances: list[Balance]
    positions: list[VenuePosition]
    open_orders: list[VenueOrder]
    fills: list[Fill]
    orders_by_id: dict[str, VenueOrder]
    transfers: list[Mapping[str, Any]]
    fills_since: datetime | None
    notes: list[str]
    capabilities: frozenset[str] = frozenset()


class Sync(Service):
    """The Engine's sync service (``engine.sync`` / ``engine.syncer``).

    Venue calls of many accounts overlap; their database writes are queued
    and committed together (`GroupCommit`): one transaction, and one fsync,
    for every account that finished its venue calls meanwhile.
    """

    def __init__(self, engine: Any):
        super().__init__(engine)
        self._commits = GroupCommit(engine)

    def run(
        self,
        account: str | None = None,
        *,
        source: str = "api",
        concurrency: int | None = None,
        on_result: Callable[[SyncResult], None] | None = None,
    ) -> list[SyncResult]:
        """Sync one account (by name) or, with None, every active non-archived account.

        Accounts run in a pool of at most *concurrency* threads. Returns one
        `SyncResult` per account, in name order; a failed account has
        ``status == "failed"`` and its error, and never stops the others.
        *on_result* is called (from a worker thread) as each account finishes.
        """
        names = [account] if account is not None else self.account_names()
        if account is not None:
            self.engine.accounts.get(account)  # NotFound before anything starts
        if not names:
            return []
        workers = max(1, min(concurrency or DEFAULT_CONCURRENCY, len(names)))

        def one(name: str) -> SyncResult:
            result = self.sync_account(name, source=source)
            if on_result is not None:
                try:
                    on_result(result)
                except Exception:
                    log.exception("sync progress callback failed")
            return result

        if workers > 1:
            self._prepare_adapters(names)
        if workers == 1:
            results = [one(name) for name in names]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tradeguard-sync") as pool:
                results = list(pool.map(one, names))
        return sorted(results, key=lambda r: r.account)

    @in_engine_db
    def _prepare_adapters(self, names: Sequence[str]) -> None:
        """Build each account's venue client (decrypting its secrets: audited writes) one at a time,
        before the pool starts; a failure here is reported by that account's own sync."""
        for name in names:
            try:
                adapter = self._adapter(self.engine.accounts.get(name))
                getattr(adapter, "client", None)
            except Exception as exc:  # noqa: BLE001 -- the worker reports it
                log.debug("preparing the adapter of %s failed: %s", name, exc)

    @in_engine_db
    def account_names(self) -> list[str]:
        """Accounts `sync --all` covers: not archived, in name order."""
        return [a.name for a in Account.select(Account.name).where(Account.archived_at.is_null()).order_by(Account.name)]

    @in_engine_db
    def sync_account(self, name: str, *, source: str = "api") -> SyncResult:
        """Sync one account; never raises for a venue or data failure (see the result)."""
        started_at = utcnow()
        start = time.perf_counter()
        result = SyncResult(account=name)
        account = self.engine.accounts.get(name)
        balance_before, previous_at = _latest_balances(account)
        positions_before = _positions(account)
        adapter = None
        calls_before = 0
        row: SyncLog | None = None

        def finish(tx_positions: Mapping[str, str] | None, after: Mapping[str, str] | None) -> SyncLog:
            result.api_calls = int(getattr(adapter, "api_calls", 0) or 0) - calls_before if adapter is not None else 0
            result.duration_ms = int((time.perf_counter() - start) * 1000)
            return SyncLog.create(
                account=account.id, sync_type="full", source=source[:20], status=result.status,
                balance_before=dict(balance_before or {}), balance_after=after,
                positions_before=dict(positions_before), positions_after=tx_positions,
                duration_ms=result.duration_ms, api_calls=result.api_calls,
                error_code=(result.error_code or None) and str(result.error_code)[:64], error_message=result.error,
                started_at=started_at,
            )

        try:
            adapter = self._adapter(account)
            calls_before = int(getattr(adapter, "api_calls", 0) or 0)
            balances = list(adapter.fetch_balance())
            recent = _recent_orders(account)
            if any(status in LIVE_STATUSES for status in recent.values()):
                self._reconcile(account, result)  # the order path's reconciliation of the orders it follows
                recent = _recent_orders(account)
            state = self._fetch(account, adapter, balances, balance_before, set(recent))
            row = self._apply(account, adapter, state, result, balance_before, previous_at, positions_before, finish)
        except Exception as exc:  # one account's failure is its own result
            result.status = "failed"
            result.error = _one_line(exc)
            result.error_code = getattr(exc, "code", None) or type(exc).__name__
            if not isinstance(exc, TradeguardError):
                log.exception("sync of %s failed unexpectedly", name)
        if row is None:
            row = self._log_failure(account, finish)
        result.sync_log_id = row.id
        payload = _log_dict(row, name)
        payload["result"] = result.to_dict()
        self.engine.plugins.fire("on_sync_finished", account=name, result=payload)
        return result

    # -- venue -------------------------------------------------------------------------------

    def _adapter(self, account: Account) -> Any:
        """The adapter the order path uses for this account (a PAPER account's simulated book)."""
        orders = getattr(self.engine, "orders", None)
        venues = getattr(orders, "venues", None)
        if venues is not None and hasattr(venues, "for_account"):
            return venues.for_account(account)
        if account.mode is TradingMode.PAPER:
            registration = self.engine.plugins.exchanges.get(account.exchange)
            if not registration.meta.get("paper"):
                raise ValidationError(
                    f"account {account.name} is a PAPER account on {account.exchange}: nothing to sync at the venue yet"
                )
        return self.engine.exchange_for(account.name)

    def _fetch(self, account: Account, adapter: Any, balances: list[Balance],
               previous: Mapping[str, str] | None, order_symbols: set[str]) -> _VenueState:
        notes: list[str] = []
        changed = _changed_assets(balances, previous)
        caps = getattr(adapter, "capabilities", frozenset())
        positions = list(adapter.fetch_positions()) if CAP_POSITIONS in caps else []
        open_orders = list(adapter.fetch_open_orders())
        since = account.last_balance_sync - FILL_OVERLAP if account.last_balance_sync else None
        unique = {f.trade_id: f for f in self._fetch_fills(account, adapter, balances, positions, open_orders, since,
                                                           previous, changed, order_symbols)}
        fills = [f for f in unique.values() if not _known_trade(account, f.trade_id)]
        orders_by_id: dict[str, VenueOrder] = {o.exchange_order_id: o for o in open_orders if o.exchange_order_id}
        known = _known_exchange_ids(account, {f.exchange_order_id for f in fills if f.exchange_order_id})
        unknown = sorted({f.exchange_order_id for f in fills if f.exchange_order_id and f.exchange_order_id not in known
                          and f.exchange_order_id not in orders_by_id})
        symbol_of = {f.exchange_order_id: f.symbol for f in fills}
        for order_id in unknown[:MAX_ORDER_LOOKUPS]:
            try:
                orders_by_id[order_id] = adapter.fetch_order(symbol_of[order_id], order_id)
            except (TradeguardError, LookupError) as exc:
                notes.append(f"order {order_id} not readable: {_one_line(exc)}")
        transfers: list[Mapping[str, Any]] = []
        if changed and CAP_CASH_FLOWS in caps and hasattr(adapter, "fetch_cash_flows") and account.last_balance_sync:
            # only a changed balance can hide a deposit or withdrawal: unchanged ones cost no history calls
            try:
                transfers = list(adapter.fetch_cash_flows(since=account.last_balance_sync - FILL_OVERLAP))
            except VenueError as exc:  # history is a nicety: without it, changes stay UNEXPLAINED
                notes.append(f"deposit/withdrawal history unavailable: {_one_line(exc)}")
        return _VenueState(balances, positions, open_orders, fills, orders_by_id, transfers, since, notes, frozenset(caps))

    def _fetch_fills(self, account: Account, adapter: Any, balances: Sequence[Balance],
                     positions: Sequence[VenuePosition], open_orders: Sequence[VenueOrder],
                     since: datetime | None, previous: Mapping[str, str] | None,
                     changed: set[str] | None, order_symbols: set[str]) -> list[Fill]:
        if not getattr(adapter, "my_trades_needs_symbol", False):
            return list(adapter.fetch_my_trades(None, since))
        symbols = self._symbols_of_interest(account, adapter, balances, positions, open_orders, previous, changed,
                                            order_symbols)
        fills: list[Fill] = []
        for symbol in sorted(symbols):
            fills.extend(adapter.fetch_my_trades(symbol, since))
        return fills

    def _symbols_of_interest(self, account: Account, adapter: Any, balances: Sequence[Balance],
                             positions: Sequence[VenuePosition], open_orders: Sequence[VenueOrder],
                             previous: Mapping[str, str] | None, changed: set[str] | None,
                             order_symbols: set[str]) -> set[str]:
        """Where fills may have happened: open orders, live or recent orders, positions, and the
        ``ASSET/QUOTE`` pairs of held assets whose balance (or the quote's) changed since the last
        sync -- every pair on the first sync. A fill always moves a balance (the base, the quote or
        the fee asset), so unchanged balances cost no per-symbol trade queries (Binance weight 20 each)."""
        symbols = {o.symbol for o in open_orders} | {p.symbol for p in positions} | set(order_symbols)
        markets = adapter.load_markets()
        quote = account.quote_currency
        for asset in {b.asset for b in balances} | set(previous or {}):
            symbol = f"{asset}/{quote}"
            if asset == quote or symbol not in markets:
                continue
            if changed is None or asset in changed or quote in changed:
                symbols.add(symbol)
        return {s for s in symbols if s in markets}

    def _reconcile(self, account: Account, result: SyncResult) -> None:
        """The order path's own reconciliation (`Engine.reconcile`): known orders, open orders, their fills."""
        report = self.engine.reconcile(account.name)
        result.reconciled = int(report.get("updated", 0)) + int(report.get("failed", 0))
        result.imported_orders += int(report.get("imported_orders", 0))
        result.imported_fills += int(report.get("imported_fills", 0))
        result.notes.extend(str(e) for e in report.get("errors", ()))

    # -- database ----------------------------------------------------------------------------

    def _apply(self, account: Account, adapter: Any, state: _VenueState, result: SyncResult,
               previous: Mapping[str, str] | None, previous_at: datetime | None, positions_before: Mapping[str, str],
               finish: Callable[..., SyncLog]) -> SyncLog:
        pricer = UsdPricer(adapter)
        usd = {b.asset: pricer.value(b.asset, b.total) for b in state.balances}  # venue calls: before the lock
        fill_usd = {f.trade_id: pricer.fill_value(f) for f in state.fills}
        transfer_usd = {t["external_id"]: pricer.value(t["asset"], Decimal(t["amount"])) for t in state.transfers}

        def work(tx: Any) -> SyncLog:
            return self._write(account, state, result, previous, previous_at, positions_before, usd, fill_usd,
                               transfer_usd, finish, tx)

        return self._commits.run(account.id, work)

    def _write(self, account: Account, state: _VenueState, result: SyncResult, previous: Mapping[str, str] | None,
               previous_at: datetime | None, positions_before: Mapping[str, str],
               usd: Mapping[str, Decimal | None], fill_usd: Mapping[str, Decimal | None],
               transfer_usd: Mapping[str, Decimal | None], finish: Callable[..., SyncLog], tx: Any) -> SyncLog:
        """Everything one sync writes, inside the (group) transaction holding the account's lock."""
        ledger_changed = bool(state.fills or state.orders_by_id)
        if ledger_changed:  # imports go through the order ledger, which updates the account row
            row = Account.get_by_id(account.id)
            result.imported_orders += self._import_orders(row, state, tx)
            result.imported_fills += self._import_fills(row, state, fill_usd, tx)
            row.save()
        flows = self._record_transfers(account, state, transfer_usd, tx)
        now = utcnow()
        unexplained = self._record_unexplained(account, state, previous, previous_at, usd, now, tx)
        result.cash_flows, result.unexplained = flows + unexplained, unexplained
        if state.balances:
            BalanceSnapshot.insert_many([
                {"account": account.id, "asset": b.asset, "free": b.free, "used": b.used, "total": b.total,
                 "usd_value": usd.get(b.asset), "source": "sync", "taken_at": now} for b in state.balances
            ]).execute()
        positions_stored = bool(state.positions) or CAP_POSITIONS in state.capabilities
        if positions_stored:
            result.positions = self._store_positions(account, state.positions, now)
        valued = [v for v in usd.values() if v is not None]
        total_usd = sum(valued, ZERO) if valued or not state.balances else None
        if len(valued) < len(usd):
            missing = sorted(a for a, v in usd.items() if v is None)
            state.notes.append(f"no USD price for {', '.join(missing)}")
        changes: dict[Any, Any] = {Account.real_balance_usd: total_usd, Account.last_balance_sync: now,
                                   Account.sync_status: "ok"}
        if account.mode is TradingMode.LIVE:  # the venue's quote balance is the account's cash
            quote = next((b for b in state.balances if b.asset == account.quote_currency), None)
            changes[Account.current_cash] = quote.total if quote is not None else ZERO
        Account.update(changes).where(Account.id == account.id).execute()
        result.balances = len(state.balances)
        result.open_orders = len(state.open_orders)
        result.balance_usd = None if total_usd is None else plain(total_usd)
        result.notes.extend(state.notes)
        positions_after = _positions(account) if (ledger_changed or positions_stored) else dict(positions_before)
        return finish(positions_after, {b.asset: plain(b.total) for b in state.balances})

    def _import_orders(self, account: Account, state: _VenueState, tx: Any) -> int:
        """Orders that new fills point at and the database lacks (done by hand, or lost with an older
        backup): import and flag them with their venue state, so their fills have an order."""
        count = 0
        for order in state.orders_by_id.values():
            if _find_order(account, order.exchange_order_id, order.client_order_id) is not None:
                continue
            client_id = order.client_order_id
            if not client_id or Order.select().where(Order.client_order_id == client_id).exists():
                client_id = f"venue-{account.id}-{order.exchange_order_id}"[:64]
            row = Order.create(
                account=account.id, client_order_id=client_id, exchange_order_id=order.exchange_order_id,
                symbol=order.symbol, side=order.side, type=order.type, price=order.price,
                quantity=order.quantity if order.quantity > 0 else max(order.filled, Decimal("1e-18")),
                filled_quantity=ZERO, status=order.status, exchange_status=order.exchange_status,
                market=MarketKind.SPOT, imported=True, created_by="sync", reason="imported from the venue",
                created_at=order.timestamp or utcnow(), submitted_at=order.timestamp,
            )
            OrderEvent.create(order=row.id, old_status=None, new_status=order.status.value, actor="sync",
                              detail={"imported": True, "exchange_order_id": order.exchange_order_id,
                                      "venue_client_order_id": order.client_order_id})
            tx.audit("sync", "order.import", f"account:{account.name}",
                     {"client_order_id": client_id, "exchange_order_id": order.exchange_order_id,
                      "symbol": order.symbol, "side": order.side.value, "quantity": plain(order.quantity),
                      "status": order.status.value})
            count += 1
        return count

    def _import_fills(self, account: Account, state: _VenueState, fill_usd: Mapping[str, Decimal | None], tx: Any) -> int:
        """Venue fills the database lacks, through the order ledger (positions and cash follow)."""
        from tradeguard.orders.ledger import apply_fill

        count = 0
        touched: dict[int, Order] = {}
        for fill in sorted(state.fills, key=lambda f: (f.timestamp, f.trade_id)):
            if Trade.select(Trade.id).where((Trade.account == account.id) & (Trade.exchange_trade_id == fill.trade_id)).exists():
                continue
            order = _find_order(account, fill.exchange_order_id, fill.client_order_id)
            if order is not None and not order.imported:
                continue  # an order tradeguard follows: its fills come through its own update (reconcile)
            trade = apply_fill(account, order, fill, imported=True)
            if trade is None:
                state.notes.append(f"fill {fill.trade_id} not applied (exceeds its order's quantity)")
                continue
            if trade.usd_value is None and fill_usd.get(fill.trade_id) is not None:
                trade.usd_value = fill_usd[fill.trade_id]
                trade.save()
            if order is not None:
                order.save()
                touched[order.id] = order
            tx.audit("sync", "fill.import", f"account:{account.name}",
                     {"trade_id": fill.trade_id, "symbol": fill.symbol, "side": fill.side.value,
                      "quantity": plain(fill.quantity), "price": plain(fill.price),
                      "order": order.client_order_id if order is not None else None})
            count += 1
        for order in touched.values():  # once all of an order's fills are in: the venue's status
            _advance(order, state.orders_by_id.get(order.exchange_order_id or ""))
            order.save()
        return count

    def _record_transfers(self, account: Account, state: _VenueState, usd: Mapping[str, Decimal | None], tx: Any) -> int:
        count = 0
        for transfer in state.transfers:
            external_id = str(transfer["external_id"])[:128]
            if CashFlow.select().where((CashFlow.account == account.id) & (CashFlow.external_id == external_id)).exists():
                continue
            amount = Decimal(transfer["amount"])
            fee = Decimal(transfer.get("fee") or 0)
            note = None
            if transfer["kind"] == "WITHDRAWAL" and fee:
                amount += fee  # what left the account: the amount sent plus the network fee
                note = f"includes a withdrawal fee of {plain(fee)} {transfer['asset']}"
            CashFlow.create(account=account.id, kind=transfer["kind"], asset=transfer["asset"],
                            amount=amount, usd_value=usd.get(transfer["external_id"]),
                            external_id=external_id, source="venue", note=note,
                            occurred_at=transfer.get("timestamp") or utcnow())
            tx.audit("sync", "cash_flow.record", f"account:{account.name}",
                     {"kind": transfer["kind"], "asset": transfer["asset"], "amount": plain(Decimal(transfer["amount"])),
                      "external_id": external_id})
            count += 1
        return count

    def _record_unexplained(self, account: Account, state: _VenueState, previous: Mapping[str, str] | None,
                            previous_at: datetime | None, usd: Mapping[str, Decimal | None], now: datetime, tx: Any) -> int:
        """Balance changes since the last snapshot that no fill or recorded transfer explains."""
        if not previous or previous_at is None:
            return 0  # the first sync is the baseline
        expected = _explained_changes(account, previous_at)
        current = {b.asset: b.total for b in state.balances}
        count = 0
        for asset in sorted(set(current) | set(previous)):
            delta = current.get(asset, ZERO) - Decimal(previous.get(asset, "0"))
            residual = delta - expected.get(asset, ZERO)
            if abs(residual) <= DUST:
                continue
            direction = "in" if residual > 0 else "out"
            amount = abs(residual)
            price = None
            if usd.get(asset) is not None and current.get(asset):
                price = usd[asset] / current[asset]
            CashFlow.create(account=account.id, kind="UNEXPLAINED", asset=asset, amount=amount,
                            usd_value=None if price is None else amount * price, external_id=None, source="sync",
                            note=f"{direction}: {asset} balance changed by {plain(delta)} since {previous_at.isoformat()}; "
                                 f"fills and transfers explain {plain(expected.get(asset, ZERO))}",
                            occurred_at=now)
            tx.audit("sync", "cash_flow.unexplained", f"account:{account.name}",
                     {"asset": asset, "direction": direction, "amount": plain(amount)})
            count += 1
        return count

    def _store_positions(self, account: Account, positions: Sequence[VenuePosition], now: datetime) -> int:
        """Derivatives positions as the venue reports them (spot holdings are balances)."""
        seen = set()
        for venue_position in positions:
            signed = venue_position.quantity if venue_position.side is Side.BUY else -venue_position.quantity
            row = Position.get_or_none((Position.account == account.id) & (Position.symbol == venue_position.symbol)
                                       & (Position.market == MarketKind.FUTURES))
            if row is None:
                row = Position(account=account.id, symbol=venue_position.symbol, market=MarketKind.FUTURES, opened_at=now)
            row.quantity = signed
            row.average_cost = venue_position.entry_price
            row.unrealized_pnl = venue_position.unrealized_pnl
            row.leverage = venue_position.leverage
            row.updated_at = now
            row.closed_at = None
            row.save()
            seen.add(venue_position.symbol)
            PositionSnapshot.create(account=account.id, symbol=venue_position.symbol, quantity=signed,
                                    average_cost=venue_position.entry_price, unrealized_pnl=venue_position.unrealized_pnl,
                                    source="sync", taken_at=now)
        stale = Position.select().where((Position.account == account.id) & (Position.market == MarketKind.FUTURES)
                                        & (Position.quantity != 0))
        for row in stale:
            if row.symbol not in seen:
                row.quantity, row.unrealized_pnl, row.closed_at, row.updated_at = ZERO, ZERO, now, now
                row.save()
        return len(positions)

    def _log_failure(self, account: Account, finish: Callable[..., SyncLog]) -> SyncLog:
        """The sync_log row of a failed sync (balances and positions left as they were)."""
        def work(tx: Any) -> SyncLog:
            Account.update(sync_status="failed").where(Account.id == account.id).execute()
            return finish(None, None)

        return self._commits.run(account.id, work)

    # -- reading -----------------------------------------------------------------------------

    @in_engine_db
    def logs(self, account: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The newest sync_log rows (of one account, or all), newest first."""
        query = SyncLog.select(SyncLog, Account.name).join(Account).order_by(SyncLog.started_at.desc(), SyncLog.id.desc())
        if account is not None:
            query = query.where(SyncLog.account == self.engine.accounts.get(account).id)
        return [_log_dict(row) for row in query.limit(limit)]


# -- group commit ----------------------------------------------------------------------------


class _Job:
    __slots__ = ("account_id", "work", "done", "result", "error")

    def __init__(self, account_id: int, work: Callable[[Any], Any]):
        self.account_id, self.work = account_id, work
        self.done, self.result, self.error = False, None, None


class _JobAudit:
    """Audit entries of one job, passed on to the transaction only if the job's savepoint held."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str, dict[str, Any]]] = []

    def audit(self, actor: str, action: str, subject: str, payload: dict[str, Any]) -> None:
        self.entries.append((actor, action, subject, payload))

    def forward(self, tx: Any) -> None:
        for entry in self.entries:
            tx.audit(*entry)


class GroupCommit:
    """Leader/follower group commit of per-account writes.

    A caller queues its work and takes the writer lock; whoever holds it runs
    every job queued so far in one transaction holding all their accounts'
    locks (ascending ids, audit head last), each job in its own savepoint so a
    failing one is rolled back alone. On SQLite, many accounts then share one
    fsync instead of queueing for the database's single write lock.
    """

    def __init__(self, engine: Any):
        self.engine = engine
        self._writer = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Job] = []

    def run(self, account_id: int, work: Callable[[Any], Any]) -> Any:
        """Run ``work(tx)`` inside a transaction holding *account_id*'s lock; its return value, or its error."""
        job = _Job(account_id, work)
        with self._queue_lock:
            self._queue.append(job)
        with self._writer:
            if not job.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run_batch(batch)
        if job.error is not None:
            raise job.error
        return job.result

    def _run_batch(self, batch: list[_Job]) -> None:
        from tradeguard.orders.locking import account_lock

        db = self.engine.db
        try:
            with account_lock(db, [job.account_id for job in batch]) as tx:
                for job in batch:
                    audits = _JobAudit()
                    try:
                        with db.atomic():  # a savepoint: this job alone rolls back
                            job.result = job.work(audits)
                    except Exception as exc:  # noqa: BLE001 -- reported to that job's caller
                        job.error = exc
                        continue
                    audits.forward(tx)
        except Exception as exc:  # the commit itself failed: nothing of the batch is stored
            for job in batch:
                if job.error is None:
                    job.error, job.result = exc, None
        finally:
            for job in batch:
                job.done = True


# -- helpers ---------------------------------------------------------------------------------


def _find_order(account: Account, exchange_order_id: str | None, client_order_id: str | None) -> Order | None:
    if exchange_order_id:
        row = Order.get_or_none((Order.account == account.id) & (Order.exchange_order_id == exchange_order_id))
        if row is not None:
            return row
    if client_order_id:
        return Order.get_or_none((Order.account == account.id) & (Order.client_order_id == client_order_id))
    return None


def _changed_assets(balances: Sequence[Balance], previous: Mapping[str, str] | None) -> set[str] | None:
    """Assets whose total differs from the last snapshot; None when there is no snapshot yet."""
    if previous is None:
        return None
    now = {b.asset: b.total for b in balances}
    before = {asset: Decimal(total) for asset, total in previous.items()}
    return {asset for asset in set(now) | set(before) if now.get(asset, ZERO) != before.get(asset, ZERO)}


def _recent_orders(account: Account) -> dict[str, OrderStatus]:
    """Symbols of the account's live orders and of orders changed in the last day, with a status each
    (a live one wins): where reconciliation and fill queries are needed."""
    since = utcnow() - timedelta(days=1)
    rows = Order.select(Order.symbol, Order.status).where(
        (Order.account == account.id) & ((Order.status.in_(LIVE_STATUSES)) | (Order.updated_at >= since))).tuples()
    out: dict[str, OrderStatus] = {}
    for symbol, status in rows:
        if symbol not in out or status in LIVE_STATUSES:
            out[symbol] = status
    return out


def _known_trade(account: Account, trade_id: str) -> bool:
    return Trade.select(Trade.id).where((Trade.account == account.id) & (Trade.exchange_trade_id == trade_id)).exists()


def _known_exchange_ids(account: Account, ids: Iterable[str]) -> set[str]:
    ids = [i for i in ids if i]
    if not ids:
        return set()
    query = Order.select(Order.exchange_order_id).where((Order.account == account.id) & Order.exchange_order_id.in_(ids))
    return {row.exchange_order_id for row in query}


def _advance(order: Order, venue_order: VenueOrder | None) -> None:
    """Move an imported or known order to what the venue says (never backwards)."""
    from tradeguard.orders.lifecycle import TRANSITIONS

    target = venue_order.status if venue_order is not None else None
    if target is None:
        if order.filled_quantity >= order.quantity:
            target = OrderStatus.FILLED
        elif order.filled_quantity > 0:
            target = OrderStatus.PARTIALLY_FILLED
    if venue_order is not None and venue_order.filled > order.filled_quantity and venue_order.filled <= order.quantity:
        order.filled_quantity = venue_order.filled
    if target is not None and target is not order.status and target in TRANSITIONS.get(order.status, frozenset()):
        OrderEvent.create(order=order.id, old_status=order.status.value, new_status=target.value, actor="sync",
                          detail={"source": "venue"})
        order.status = target
        order.exchange_status = venue_order.exchange_status if venue_order is not None else order.exchange_status
    order.updated_at = utcnow()


def _explained_changes(account: Account, since: datetime) -> dict[str, Decimal]:
    """Per asset, what fills and recorded transfers since *since* did to the venue balances."""
    changes: dict[str, Decimal] = {}

    def add(asset: str, amount: Decimal) -> None:
        changes[asset] = changes.get(asset, ZERO) + amount

    fills = Trade.select().where((Trade.account == account.id) & (Trade.exchange_timestamp > since) & Trade.tx_hash.is_null())
    for trade in fills:
        base, _, rest = trade.symbol.partition("/")
        quote = rest.split(":")[0]
        notional = trade.price * trade.quantity
        if trade.side is Side.BUY:
            add(base, trade.quantity)
            add(quote, -notional)
        else:
            add(base, -trade.quantity)
            add(quote, notional)
        if trade.fee:
            add(trade.fee_currency or quote, -trade.fee)
    signs = {"DEPOSIT": 1, "TRANSFER_IN": 1, "WITHDRAWAL": -1, "TRANSFER_OUT": -1}
    for flow in CashFlow.select().where((CashFlow.account == account.id) & (CashFlow.kind.in_(list(signs)))
                                        & (CashFlow.occurred_at > since)):
        add(flow.asset, flow.amount * signs[flow.kind])
    return changes


def _latest_balances(account: Account) -> tuple[dict[str, str] | None, datetime | None]:
    """The newest balance snapshot as ({asset: total}, taken_at), or (None, None) before the first sync."""
    newest = (BalanceSnapshot.select(fn.MAX(BalanceSnapshot.taken_at))
              .where(BalanceSnapshot.account == account.id))
    rows = list(BalanceSnapshot.select(BalanceSnapshot.asset, BalanceSnapshot.total, BalanceSnapshot.taken_at)
                .where((BalanceSnapshot.account == account.id) & (BalanceSnapshot.taken_at == newest)))
    if not rows:
        return None, None
    return {row.asset: plain(row.total) for row in rows}, rows[0].taken_at


def _positions(account: Account) -> dict[str, str]:
    rows = Position.select().where((Position.account == account.id) & (Position.quantity != 0))
    return {f"{row.symbol}" + ("" if row.market is MarketKind.SPOT else f" ({row.market.value})"): plain(row.quantity)
            for row in rows}


def _log_dict(row: SyncLog, account: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "account": account if account is not None else row.account.name,
        "sync_type": row.sync_type,
        "source": row.source,
        "status": row.status,
        "balance_before": row.balance_before,
        "balance_after": row.balance_after,
        "positions_before": row.positions_before,
        "positions_after": row.positions_after,
        "duration_ms": row.duration_ms,
        "api_calls": row.api_calls,
        "error_code": row.error_code,
        "error_message": row.error_message,
        "started_at": row.started_at.isoformat() if row.started_at else None,
    }


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:500]


__all__ = ["DEFAULT_CONCURRENCY", "Sync", "SyncResult"]

