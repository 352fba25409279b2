"""Retention for high-volume logs (``tradeguard db prune``).

Only these tables are ever pruned, each by age with its own setting:

=====================  ==================  ==============================
table                  age column          setting (default)
=====================  ==================  ==============================
``sync_log``           ``started_at``      ``retention_sync_log`` (90d)
``balance_snapshot``   ``taken_at``        ``retention_balance_snapshot`` (90d)
``position_snapshot``  ``taken_at``        ``retention_position_snapshot`` (90d)
=====================  ==================  ==============================

Orders, order events, trades, positions, cash flows, risk logs, emergency
events, the audit log and its checkpoints are NEVER pruned: they are the
record users trust tradeguard for. The newest rows of each account in a pruned
table (all rows at its newest time: the last balance snapshot of every asset,
the last sync) and its last successful sync are always kept, however old.

Pruning deletes in small batches, each its own short transaction, so bots
keep trading while it runs. An ``db.prune.start`` audit entry records the
cut-offs before the first row goes and ``db.prune`` the counts after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from tradeguard import audit
from tradeguard.clock import isoformat, utcnow
from tradeguard.durations import format_duration, parse_duration
from tradeguard.errors import ValidationError
from tradeguard.storage import use_database
from tradeguard.storage.models import BalanceSnapshot, PositionSnapshot, SyncLog

#: Rows deleted per transaction.
BATCH = 2000
#: The shortest retention accepted (a typo like ``--older-than 0d`` must not wipe the logs).
MINIMUM = timedelta(days=1)


@dataclass(frozen=True)
class Prunable:
    """A table that may be pruned: its model, age column and retention setting."""

    model: type[pw.Model]
    column: str
    setting: str

    @property
    def table(self) -> str:
        return self.model._meta.table_name


PRUNABLE: tuple[Prunable, ...] = (
    Prunable(SyncLog, "started_at", "retention_sync_log"),
    Prunable(BalanceSnapshot, "taken_at", "retention_balance_snapshot"),
    Prunable(PositionSnapshot, "taken_at", "retention_position_snapshot"),
)

#: Tables that are never pruned, whatever the options (documented, and checked by the tests).
NEVER_PRUNED: tuple[str, ...] = (
    "order", "order_event", "trade", "position", "cash_flow", "risk_log", "emergency_event",
    "audit_log", "audit_checkpoint",
)


@dataclass
class PruneItem:
    """One table's cut-off and the rows deleted (or that would be)."""

    table: str
    retention: str
    cutoff: datetime
    rows: int = 0


@dataclass
class PruneResult:
    """What `prune` did."""

    dry_run: bool
    items: list[PruneItem] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(item.rows for item in self.items)

    @property
    def never_pruned(self) -> tuple[str, ...]:
        return NEVER_PRUNED

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "total": self.total,
            "tables": [{"table": i.table, "retention": i.retention, "older_than": isoformat(i.cutoff),
                        ("would_delete" if self.dry_run else "deleted"): i.rows} for i in self.items],
            "never_pruned": list(NEVER_PRUNED),
        }


def retention_for(engine: Any, item: Prunable, older_than: str | timedelta | None) -> timedelta:
    """The retention that applies to *item*: *older_than* if given, else its setting."""
    if older_than is not None:
        age = parse_duration(older_than, "--older-than")
    else:
        age = parse_duration(getattr(engine.settings, item.setting), item.setting, config=True)
    if age < MINIMUM:
        raise ValidationError(f"{'--older-than' if older_than is not None else item.setting}: "
                              f"{format_duration(age)} is shorter than the minimum retention of 1d")
    return age


def _candidates(item: Prunable, cutoff: datetime) -> pw.ModelSelect:
    """Rows older than *cutoff*, except each account's newest set (all rows at its newest time:
    sync reads the last balance snapshot *set* as "before")."""
    model = item.model
    column = getattr(model, item.column)
    other = model.alias()
    newest = other.select(pw.fn.MAX(getattr(other, item.column))).where(other.account == model.account)
    query = model.select(model.id).where((column < cutoff) & (column < newest))
    if model is SyncLog:
        # Keep each account's last *successful* sync too: doctor reports its age.
        newest_ok = SyncLog.select(pw.fn.MAX(SyncLog.id)).where(SyncLog.status == "ok").group_by(SyncLog.account)
        query = query.where(model.id.not_in(newest_ok))
    return query


def prune(engine: Any, *, older_than: str | timedelta | None = None, dry_run: bool = False,
          actor: str = "cli", now: datetime | None = None) -> PruneResult:
    """Delete rows past their retention from the prunable tables (see module docstring).

    :param older_than: one retention for every prunable table (default: each table's setting).
    :param dry_run: count only; nothing is deleted or audited.
    """
    engine._check_open()
    now = now or utcnow()
    result = PruneResult(dry_run=dry_run)
    for item in PRUNABLE:
        age = retention_for(engine, item, older_than)
        result.items.append(PruneItem(item.table, format_duration(age), now - age))
    db = engine.db
    with use_database(db):
        if dry_run:
            for spec, item in zip(PRUNABLE, result.items):
                item.rows = _candidates(spec, item.cutoff).count()
            return result
        with db.atomic():
            audit.append(actor, "db.prune.start", "database",
                         {"cutoffs": {i.table: isoformat(i.cutoff) for i in result.items}})
        for spec, item in zip(PRUNABLE, result.items):
            while True:
                with db.atomic():
                    ids = [row.id for row in _candidates(spec, item.cutoff).order_by(spec.model.id).limit(BATCH)]
                    if not ids:
                        break
                    item.rows += spec.model.delete().where(spec.model.id.in_(ids)).execute()
        with db.atomic():
            audit.append(actor, "db.prune", "database",
                         {"deleted": {i.table: i.rows for i in result.items},
                          "cutoffs": {i.table: isoformat(i.cutoff) for i in result.items}})
    return result


def prune_if_due(engine: Any, *, every: timedelta = timedelta(days=1), actor: str = "runner") -> PruneResult | None:
    """Prune with the configured retentions if the last prune is older than *every*
    (for long-running processes such as the bot runner); None when not due."""
    last = engine.get_setting("retention.last_prune_at")
    now = utcnow()
    if last is not None:
        from tradeguard.clock import parse_iso

        if now - parse_iso(last) < every:
            return None
    result = prune(engine, actor=actor, now=now)
    engine.set_setting("retention.last_prune_at", isoformat(now))
    return result
