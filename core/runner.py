"""The bot runner: calls a bot every tick under the guard.

A bot is a function ``tick(ctx)`` (``module:function`` or ``path/to/bot.py``
with a ``tick`` function). `BotContext` lets it read prices, balances and
positions and place or cancel orders — always through `Engine.place_order`,
so every order passes the risk rules and is recorded before it is sent.

One runner per account: a `RunnerLease` row names the holder and carries a
heartbeat; a second runner refuses to start and names the holder, and a lease
whose heartbeat is older than ``lease_timeout`` may be taken over (audited).
SIGINT/SIGTERM only set a flag: the tick in progress finishes (an order is
either fully recorded and sent or not started), then the runner records the
run and exits 0 with a summary.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from tradeguard import audit
from tradeguard.clock import utcnow
from tradeguard.errors import OrderNotSent, TradeguardError, ValidationError
from tradeguard.service import in_engine_db
from tradeguard.storage.models import Account, BotRun, Position, RunnerLease

log = logging.getLogger("tradeguard.runner")

DEFAULT_LEASE_TIMEOUT = timedelta(seconds=60)
FAILURES_BEFORE_REDUCING = 3


class LeaseHeld(ValidationError):
    """Another runner holds the account."""


def load_bot(spec: str) -> Callable[["BotContext"], Any]:
    """Import a bot from ``module:function``, ``path.py[:function]`` or ``module`` (function ``tick``)."""
    target, _, func_name = spec.partition(":") if not (spec.endswith(".py") and ":" not in spec) else (spec, "", "")
    func_name = func_name or "tick"
    try:
        if target.endswith(".py") or os.sep in target:
            path = Path(target)
            if not path.exists():
                raise ValidationError(f"bot file {target} does not exist")
            module_spec = importlib.util.spec_from_file_location(f"tradeguard_bot_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except ValidationError:
        raise
    except Exception as exc:
        raise ValidationError(f"cannot load bot {spec!r}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValidationError(f"bot {spec!r} has no function {func_name!r}")
    return func


@dataclass
class RunSummary:
    run_id: int
    bot: str
    account: str
    ticks: int = 0
    orders: int = 0
    refused: int = 0
    errors: int = 0
    exit_reason: str = "completed"

    def line(self) -> str:
        return (f"run {self.run_id} of {self.bot} on {self.account}: {self.ticks} ticks, {self.orders} orders, "
                f"{self.refused} refused, {self.errors} bot errors; stopped: {self.exit_reason}")


class BotContext:
    """What a bot sees each tick. Orders go through the guard; nothing bypasses it."""

    def __init__(self, runner: "Runner"):
        self._runner = runner
        self.engine = runner.engine
        self.account = runner.account
        self.tick = 0
        self.state: dict[str, Any] = {}  # the bot's own memory across ticks
        self.log = logging.getLogger(f"tradeguard.bot.{runner.bot_name}")

    def price(self, symbol: str) -> Decimal:
        """The venue's last price for *symbol*."""
        return self.engine.exchange_for(self.account).fetch_ticker(symbol).last

    def balances(self) -> dict[str, Decimal]:
        """Total holdings per asset at the venue."""
        return {b.asset: b.total for b in self.engine.exchange_for(self.account).fetch_balance()}

    def position(self, symbol: str) -> Decimal:
        """The net quantity held in *symbol* as tradeguard records it (0 if none)."""
        return self._runner.position_quantity(symbol)

    def buy(self, symbol: str, quantity: Any, **kwargs: Any) -> Any:
        return self.place_order(symbol, "buy", quantity, **kwargs)

    def sell(self, symbol: str, quantity: Any, **kwargs: Any) -> Any:
        return self.place_order(symbol, "sell", quantity, **kwargs)

    def place_order(self, symbol: str, side: str, quantity: Any, **kwargs: Any) -> Any:
        """Place an order through the guard. Returns the order, or None if it was not sent (refused)."""
        return self._runner.place(symbol, side, quantity, **kwargs)

    def cancel(self, order_id: int) -> Any:
        return self.engine.cancel_order(order_id, actor=self._runner.actor)


class Runner:
    """Runs one bot on one account. Use `run()`; see the module docstring."""

    def __init__(self, engine: Any, bot: str, account: str, *, interval: float = 1.0, ticks: int | None = None,
                 on_error: str = "skip", lease_timeout: timedelta = DEFAULT_LEASE_TIMEOUT,
                 echo: Callable[[str], None] = print, backup_every: timedelta | None = None,
                 keep_backups: int = 24):
        if on_error not in ("skip", "stop"):
            raise ValidationError(f"on_error: expected skip or stop, got {on_error!r}")
        if interval < 0:
            raise ValidationError("interval must not be negative")
        if ticks is not None and ticks < 1:
            raise ValidationError("ticks must be at least 1")
        self.engine = engine
        self.bot_spec = bot
        self.bot_name = Path(bot.split(":")[0]).stem if bot.endswith(".py") or os.sep in bot else bot
        self.account = account
        self.interval = interval
        self.max_ticks = ticks
        self.on_error = on_error
        self.lease_timeout = lease_timeout
        self.echo = echo
        self.backup_every = backup_every
        self.keep_backups = keep_backups
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.actor = f"bot:{self.bot_name}"
        self._stop = threading.Event()
        self._stop_reason = "completed"
        self._backup_thread: threading.Thread | None = None
        self.run_id: int | None = None
        self.summary: RunSummary | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the runner to stop after the tick in progress."""
        self._stop_reason = reason
        self._stop.set()

    def run(self) -> RunSummary:
        """Acquire the lease, reconcile, tick until done or stopped, release, record the run."""
        func = load_bot(self.bot_spec)
        self.engine.accounts.get(self.account)
        self.run_id = self._acquire_lease()
        summary = self.summary = RunSummary(self.run_id, self.bot_name, self.account)
        previous = self._install_signal_handlers()
        context = BotContext(self)
        consecutive_failures = 0
        last_backup = time.monotonic()
        try:
            self._start_of_run()
            while not self._stop.is_set():
                if self.max_ticks is not None and summary.ticks >= self.max_ticks:
                    break
                context.tick = summary.ticks + 1
                try:
                    func(context)
                    consecutive_failures = 0
                except OrderNotSent:
                    summary.refused += 1  # refused orders are normal outcomes, counted in place()
                except Exception:
                    summary.errors += 1
                    consecutive_failures += 1
                    self.echo(f"tick {context.tick}: the bot raised:\n{traceback.format_exc().rstrip()}")
                    if self.on_error == "stop":
                        self.request_stop("bot error")
                    elif consecutive_failures >= FAILURES_BEFORE_REDUCING:
                        self._reduce_after_failures(consecutive_failures)
                        consecutive_failures = 0
                summary.ticks += 1
                self._heartbeat(summary)
                self.echo(self._status_line(context))
                self._prune_logs_if_due()
                if self.backup_every and time.monotonic() - last_backup >= self.backup_every.total_seconds():
                    if self._start_backup():
                        last_backup = time.monotonic()
                if self.max_ticks is not None and summary.ticks >= self.max_ticks:
                    break
                self._stop.wait(self.interval)
            summary.exit_reason = self._stop_reason
        finally:
            self._restore_signal_handlers(previous)
            if self._backup_thread is not None:
                self._backup_thread.join()
            self._finish(summary)
        return summary

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for signum, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
            previous[signum] = signal.signal(signum, lambda *_a, _n=name: self.request_stop(_n))
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _start_of_run(self) -> None:
        reconcile = getattr(self.engine, "reconcile", None)
        if reconcile is not None:
            reconcile(self.account)
        sync = getattr(self.engine, "sync", None)
        if sync is not None:
            try:
                sync(self.account)
            except TradeguardError as exc:
                self.echo(f"warning: initial sync failed: {exc}")

    # -- orders ------------------------------------------------------------------------------

    def place(self, symbol: str, side: str, quantity: Any, **kwargs: Any) -> Any:
        assert self.summary is not None
        kwargs.setdefault("actor", self.actor)
        kwargs.setdefault("reason", f"{self.bot_name} tick {self.summary.ticks + 1}")
        try:
            order = self.engine.place_order(self.account, symbol, side, quantity, run=self.run_id, **kwargs)
        except OrderNotSent as exc:
            self.summary.refused += 1
            self.echo(f"order refused: {exc}")
            return None
        self.summary.orders += 1
        return order

    @in_engine_db
    def position_quantity(self, symbol: str) -> Decimal:
        account = Account.get(Account.name == self.account)
        row = Position.get_or_none((Position.account == account) & (Position.symbol == symbol))
        return row.quantity if row else Decimal(0)

    # -- lease and run records ----------------------------------------------------------------

    @in_engine_db
    def _acquire_lease(self) -> int:
        now = utcnow()
        with self.engine.db.atomic():
            account = Account.get(Account.name == self.account)
            lease = RunnerLease.get_or_none(RunnerLease.account == account)
            if lease is not None:
                age = now - lease.heartbeat_at
                if age < self.lease_timeout:
                    raise LeaseHeld(
                        f"account {self.account!r} is held by runner {lease.owner} (run {lease.run_id}, "
                        f"heartbeat {int(age.total_seconds())}s ago); stop it first or wait "
                        f"{int((self.lease_timeout - age).total_seconds())}s for the lease to expire"
                    )
                audit.append(self.actor, "runner.lease_takeover", f"account:{self.account}",
                             {"previous_owner": lease.owner, "previous_run": lease.run_id,
                              "heartbeat_age_s": int(age.total_seconds()), "new_owner": self.owner})
                if lease.run_id:
                    BotRun.update(stopped_at=now, exit_reason="lease taken over").where(
                        (BotRun.id == lease.run_id) & BotRun.stopped_at.is_null()).execute()
                lease.delete_instance()
            run = BotRun.create(account=account, bot=self.bot_spec, owner=self.owner, started_at=now)
            RunnerLease.create(account=account, owner=self.owner, run=run, acquired_at=now, heartbeat_at=now)
            audit.append(self.actor, "runner.start", f"account:{self.account}", {"run": run.id, "bot": self.bot_spec,
                                                                                 "owner": self.owner})
        return run.id

    @in_engine_db
    def _heartbeat(self, summary: RunSummary) -> None:
        with self.engine.db.atomic():
            RunnerLease.update(heartbeat_at=utcnow()).where(
                (RunnerLease.run == summary.run_id) & (RunnerLease.owner == self.owner)).execute()
            BotRun.update(ticks=summary.ticks, orders=summary.orders).where(BotRun.id == summary.run_id).execute()

    @in_engine_db
    def _finish(self, summary: RunSummary) -> None:
        with self.engine.db.atomic():
            BotRun.update(stopped_at=utcnow(), ticks=summary.ticks, orders=summary.orders,
                          exit_reason=summary.exit_reason).where(BotRun.id == summary.run_id).execute()
            RunnerLease.delete().where((RunnerLease.run == summary.run_id) & (RunnerLease.owner == self.owner)).execute()
            audit.append(self.actor, "runner.stop", f"account:{self.account}",
                         {"run": summary.run_id, "ticks": summary.ticks, "orders": summary.orders,
                          "refused": summary.refused, "errors": summary.errors, "exit_reason": summary.exit_reason})

    def _reduce_after_failures(self, failures: int) -> None:
        reason = f"bot {self.bot_name} failed {failures} ticks in a row"
        self.echo(f"{reason}: putting account {self.account} in REDUCING")
        self.engine.trading.reduce(self.account, reason=reason, source=self.actor)

    def _prune_logs_if_due(self) -> None:
        """Apply the configured log retention once a day (sync logs, snapshots; never orders or audit)."""
        from tradeguard.retention import prune_if_due

        try:
            result = prune_if_due(self.engine, actor=self.actor)
        except TradeguardError as exc:
            self.echo(f"warning: log retention failed: {exc}")
            return
        if result is not None and getattr(result, "total", 0):
            self.echo(f"retention: pruned {result.total} old log rows")

    def _start_backup(self) -> bool:
        """Start a scheduled backup in a worker thread (unless one is still running).

        The snapshot takes no lock that blocks orders; only its final record is
        one short transaction, so trading goes on while the backup runs.
        """
        if self._backup_thread is not None and self._backup_thread.is_alive():
            return False
        self._backup_thread = threading.Thread(target=self._scheduled_backup, name="tradeguard-backup", daemon=True)
        self._backup_thread.start()
        return True

    def _scheduled_backup(self) -> None:
        """Create a backup and keep the newest ``keep_backups``."""
        try:
            created = self.engine.backups.create(reason="scheduled")
            self.engine.backups.prune(keep_last=self.keep_backups)
            self.echo(f"backup {created.get('id', created.get('name', ''))} created")
        except TradeguardError as exc:
            self.echo(f"warning: scheduled backup failed: {exc}")

    def _status_line(self, context: BotContext) -> str:
        assert self.summary is not None
        s = self.summary
        extra = context.state.get("status", "")
        return f"tick {s.ticks}: orders {s.orders}, refused {s.refused}, errors {s.errors}{'  ' + extra if extra else ''}"
