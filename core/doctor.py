"""``tradeguard doctor``: what an operator checks every morning, one line per check.

Each check says ``ok``, ``warn``, ``fail`` or ``skip`` (not applicable, or not
checkable without a master key) and, when not ok, the fix. The command exits 1
when any check fails; warnings alone exit 0, so it fits cron and monitoring.
Doctor only reads (a wrong master key is audited by the vault, as always).

Thresholds come from settings (``doctor_max_sync_age`` …, see `tradeguard
config show`); docs/operations.md explains every check.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import peewee as pw

from tradeguard.clock import isoformat, utcnow
from tradeguard.config import Settings
from tradeguard.durations import format_duration, parse_duration
from tradeguard.errors import ConfigError, TradeguardError
from tradeguard.storage import redact_url, sqlite_path, use_database
from tradeguard.storage import migrations
from tradeguard.storage.models import Account, AuditCheckpoint, Backup, Order, RunnerLease, Setting, SyncLog
from tradeguard.types import OrderStatus, TradingMode, TradingState

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
#: A runner lease whose heartbeat is older than this is stale (the runner's own takeover timeout).
DEFAULT_LEASE_TIMEOUT = timedelta(seconds=60)
#: Backup rows that count as a successful backup.
GOOD_BACKUP = ("created", "verified")


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    message: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """Every check, in order."""

    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        out = {OK: 0, WARN: 0, FAIL: 0, SKIP: 0}
        for check in self.checks:
            out[check.status] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"ok": not self.failed, "counts": self.counts(), "checks": [asdict(c) for c in self.checks]}


@dataclass
class Thresholds:
    """How old is too old."""

    max_sync_age: timedelta
    max_backup_age: timedelta
    pending_submit_age: timedelta
    max_wal_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings, *, max_sync_age: str | None = None,
                      max_backup_age: str | None = None) -> "Thresholds":
        try:
            wal_mb = int(str(settings.doctor_max_wal_mb).strip())
        except ValueError:
            raise ConfigError(f"doctor_max_wal_mb: expected a whole number of megabytes, "
                              f"got {settings.doctor_max_wal_mb!r}") from None
        return cls(
            max_sync_age=parse_duration(max_sync_age, "--max-sync-age") if max_sync_age
            else parse_duration(settings.doctor_max_sync_age, "doctor_max_sync_age", config=True),
            max_backup_age=parse_duration(max_backup_age, "--max-backup-age") if max_backup_age
            else parse_duration(settings.doctor_max_backup_age, "doctor_max_backup_age", config=True),
            pending_submit_age=parse_duration(settings.doctor_pending_submit_age, "doctor_pending_submit_age",
                                              config=True),
            max_wal_bytes=wal_mb * 1024 * 1024,
        )


def _ago(when: datetime, now: datetime) -> str:
    return f"{format_duration(now - when)} ago"


# -- checks that need no database -------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_permissions(settings: Settings) -> Check:
    """Home 0700; database, WAL and key files 0600 (nobody else may read them)."""
    problems: list[str] = []
    fixes: list[str] = []
    worst = OK
    home = settings.home_path
    if home.is_dir() and _mode(home) & 0o077:
        problems.append(f"home {home} is {_mode(home):04o}")
        fixes.append(f"chmod 700 {home}")
        worst = WARN
    private: list[Path] = []
    db_file = sqlite_path(settings.effective_database_url)
    if db_file is not None:
        private += [db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm"), Path(f"{db_file}-journal")]
    if settings.master_key_file:
        private.append(Path(os.path.expanduser(str(settings.master_key_file))))
    config_file = home / "config.toml"
    if config_file.exists() and settings.values["master_key"].source == "config.toml":
        private.append(config_file)
    checked = 0
    for path in private:
        if not path.exists():
            continue
        checked += 1
        if _mode(path) & 0o077:
            problems.append(f"{path} is {_mode(path):04o}")
            fixes.append(f"chmod 600 {path}")
            worst = FAIL
    if problems:
        return Check("permissions", worst, "; ".join(problems), " && ".join(fixes))
    return Check("permissions", OK, f"home 0700, {checked} private file(s) 0600")


# -- database checks --------------------------------------------------------------------


def check_database(engine: Any) -> Check:
    """Reachable (already opened), not an incomplete copy, migrated to this tradeguard's schema."""
    from tradeguard.dbcopy import incomplete_copy

    where = redact_url(engine.url)
    marker = incomplete_copy(engine.db)
    if marker is not None:
        return Check("database", FAIL, f"{where} holds an incomplete copy (started {marker.get('started_at')})",
                     "run `tradeguard db copy --to URL` again from the source installation")
    with use_database(engine.db):
        version = migrations.current(engine.db)
    head = migrations.head()
    if version == 0:
        return Check("database", FAIL, f"{where} has no tradeguard schema", "tradeguard init")
    if version < head:
        return Check("database", FAIL, f"{where} is at schema {version}, this tradeguard needs {head}",
                     "tradeguard db migrate (after a backup)")
    if version > head:
        return Check("database", FAIL, f"{where} is at schema {version}, newer than this tradeguard ({head})",
                     "upgrade tradeguard")
    return Check("database", OK, f"{where} reachable, schema {version}")


def check_wal(engine: Any, thresholds: Thresholds) -> Check:
    """SQLite: the WAL file's size (a reader that never ends stops checkpoints)."""
    path = sqlite_path(engine.url)
    if path is None or engine.backend != "sqlite":
        return Check("wal", SKIP, f"not applicable ({engine.backend})")
    wal = Path(f"{path}-wal")
    size = wal.stat().st_size if wal.exists() else 0
    text = f"WAL {size / 1024 / 1024:.1f} MB (limit {thresholds.max_wal_bytes // 1024 // 1024} MB)"
    if size > thresholds.max_wal_bytes:
        return Check("wal", WARN, text,
                     f"stop long-lived readers, then run: sqlite3 {path} 'PRAGMA wal_checkpoint(TRUNCATE)'",
                     {"bytes": size})
    return Check("wal", OK, text, details={"bytes": size})


def check_vault(engine: Any, master_key: Any) -> Check:
    """The vault opens with the given master key (skipped without one)."""
    vault = getattr(engine, "vault", None)
    if vault is None:
        return Check("vault", SKIP, "this tradeguard has no vault")
    if not vault.initialised():
        return Check("vault", OK, "no master key set yet (no secret stored)")
    if master_key is None:
        return Check("vault", SKIP, "not checked: no master key given",
                     "set TRADEGUARD_MASTER_KEY or master_key_file to check it")
    try:
        vault.unlock(master_key, actor="doctor", checkpoint=False)
    except TradeguardError as exc:
        return Check("vault", FAIL, f"the master key does not open the vault: {exc}",
                     "check TRADEGUARD_MASTER_KEY / master_key_file (a rotated key? see docs/security.md)")
    status = vault.status()
    return Check("vault", OK, f"unlocked (master key {status.get('master_key_id')}, "
                              f"{len(status.get('data_keys', []))} data keys)")


def check_audit(engine: Any, *, full: bool = False) -> Check:
    """Audit chain (and seals, vault unlocked) from the last sealed checkpoint on (``full``: from entry 1)."""
    audit = getattr(engine, "audit", None)
    if audit is None or not hasattr(audit, "verify"):
        return Check("audit", SKIP, "this tradeguard cannot verify the audit trail")
    with use_database(engine.db):
        last = AuditCheckpoint.select().order_by(AuditCheckpoint.seq.desc()).first()
    start = 1 if full or last is None else max(1, last.seq)
    report = audit.verify(from_seq=start, record=False)
    scope = "from entry 1" if start == 1 else f"from checkpoint #{start}"
    if not report.ok:
        return Check("audit", FAIL, f"chain verification failed {scope}: {report.message}",
                     "run `tradeguard audit verify` for details; investigate before trading, and restore from a "
                     "verified backup if history was altered (docs/backups.md)",
                     {"bad_seq": report.bad_seq, "problem": report.problem})
    seals = "seals checked" if report.keyed else "seals not checked (no master key)"
    return Check("audit", OK, f"{report.entries} entries verified {scope}, head #{report.last_seq or 0}; {seals}",
                 details={"from_seq": start, "entries": report.entries, "keyed": report.keyed})


def check_sync(engine: Any, thresholds: Thresholds, now: datetime) -> Iterator[Check]:
    """Per account: the age of the last successful sync (LIVE accounts fail when stale)."""
    with use_database(engine.db):
        accounts = list(Account.select().where(Account.archived_at.is_null()).order_by(Account.name))
        for account in accounts:
            name = f"sync:{account.name}"
            live = account.mode is TradingMode.LIVE
            bad = FAIL if live else WARN
            last_ok = (SyncLog.select().where((SyncLog.account == account) & (SyncLog.status == "ok"))
                       .order_by(SyncLog.started_at.desc()).first())
            latest = SyncLog.select().where(SyncLog.account == account).order_by(SyncLog.started_at.desc()).first()
            fix = f"tradeguard sync {account.name}"
            if last_ok is None:
                if not live and latest is None:
                    yield Check(name, OK, "paper account, never synced")
                else:
                    yield Check(name, bad, "never synced successfully"
                                + (f" (last attempt: {latest.error_message or latest.error_code})" if latest else ""), fix)
                continue
            age = now - last_ok.started_at
            text = f"last good sync {_ago(last_ok.started_at, now)} (limit {format_duration(thresholds.max_sync_age)})"
            if latest is not None and latest.status != "ok":
                text += f"; the latest attempt failed: {latest.error_message or latest.error_code}"
            if age > thresholds.max_sync_age:
                yield Check(name, bad, text, fix, {"age_seconds": int(age.total_seconds())})
            elif latest is not None and latest.status != "ok":
                yield Check(name, WARN, text, fix, {"age_seconds": int(age.total_seconds())})
            else:
                yield Check(name, OK, text, details={"age_seconds": int(age.total_seconds())})


def check_backup(engine: Any, thresholds: Thresholds, now: datetime) -> Check:
    """The last successful backup's age (failing on a production profile)."""
    production = engine.profile == "production"
    bad = FAIL if production else WARN
    fix = "tradeguard backup create (and schedule it: docs/backups.md)"
    with use_database(engine.db):
        last = (Backup.select().where(Backup.status.in_(GOOD_BACKUP)).order_by(Backup.created_at.desc()).first())
        latest = Backup.select().order_by(Backup.created_at.desc()).first()
    if last is None:
        return Check("backup", bad, "no backup yet", fix)
    age = now - last.created_at
    text = (f"last backup {last.name} {_ago(last.created_at, now)} ({last.status}; "
            f"limit {format_duration(thresholds.max_backup_age)})")
    if latest is not None and latest.id != last.id:
        text += f"; a later backup is {latest.status}"
    if age > thresholds.max_backup_age:
        return Check("backup", bad, text, fix, {"age_seconds": int(age.total_seconds())})
    if latest is not None and latest.id != last.id:
        return Check("backup", WARN, text, "tradeguard backup verify / backup list", {"age_seconds": int(age.total_seconds())})
    return Check("backup", OK, text, details={"age_seconds": int(age.total_seconds())})


def check_trading_state(engine: Any) -> Check:
    """The installation and accounts that are HALTED or REDUCING."""
    with use_database(engine.db):
        row = Setting.get_or_none(Setting.key == "trading_state")
        installation = (row.value or {}).get("state", "ACTIVE") if row is not None and isinstance(row.value, dict) else "ACTIVE"
        held = [(a.name, a.trading_state.value) for a in
                Account.select().where(Account.archived_at.is_null()
                                       & (Account.trading_state != TradingState.ACTIVE)).order_by(Account.name)]
    parts = []
    if installation != "ACTIVE":
        parts.append(f"installation {installation}")
    parts += [f"{name} {state}" for name, state in held]
    if parts:
        fixes = [f"tradeguard resume {name} --by NAME" for name, _ in held]
        if installation != "ACTIVE":
            fixes.insert(0, "tradeguard resume --all --by NAME")
        return Check("trading_state", WARN, ", ".join(parts),
                     "once the cause is understood (`tradeguard state`): " + "; ".join(fixes),
                     {"installation": installation, "accounts": dict(held)})
    return Check("trading_state", OK, "installation and every account ACTIVE")


def check_pending_orders(engine: Any, thresholds: Thresholds, now: datetime) -> Check:
    """Orders still PENDING_SUBMIT after the threshold: their fate at the venue is unknown."""
    cutoff = now - thresholds.pending_submit_age
    with use_database(engine.db):
        stuck = list(Order.select(Order.id, Order.client_order_id, Order.created_at, Account.name)
                     .join(Account).where((Order.status == OrderStatus.PENDING_SUBMIT) & (Order.created_at < cutoff))
                     .order_by(Order.created_at).limit(1000))
    if not stuck:
        return Check("orders", OK, f"no order PENDING_SUBMIT for more than {format_duration(thresholds.pending_submit_age)}")
    accounts = sorted({o.account.name for o in stuck})
    return Check("orders", FAIL,
                 f"{len(stuck)} order(s) stuck in PENDING_SUBMIT, oldest {stuck[0].client_order_id} "
                 f"{_ago(stuck[0].created_at, now)} ({', '.join(accounts)})",
                 "reconcile with the venue by client order id: " + "; ".join(f"tradeguard sync {a}" for a in accounts),
                 {"orders": [o.client_order_id for o in stuck]})


def check_runners(engine: Any, now: datetime) -> Check:
    """Runner leases: who runs which account, and leases whose heartbeat stopped."""
    try:
        from tradeguard.runner import DEFAULT_LEASE_TIMEOUT as timeout
    except Exception:  # the runner is optional
        timeout = DEFAULT_LEASE_TIMEOUT
    with use_database(engine.db):
        leases = list(RunnerLease.select(RunnerLease, Account.name).join(Account).order_by(Account.name))
    if not leases:
        return Check("runners", OK, "no runner lease held")
    stale = [lease for lease in leases if now - lease.heartbeat_at > timeout]
    text = ", ".join(f"{lease.account.name} by {lease.owner} (heartbeat {_ago(lease.heartbeat_at, now)})"
                     for lease in leases)
    details = {"leases": [{"account": lease.account.name, "owner": lease.owner,
                           "heartbeat_at": isoformat(lease.heartbeat_at), "stale": lease in stale} for lease in leases]}
    if stale:
        return Check("runners", WARN, f"{len(stale)} stale lease(s): {text}",
                     "the runner stopped without releasing its lease: check that host; the next `tradeguard run` "
                     "takes a stale lease over", details)
    return Check("runners", OK, f"{len(leases)} lease(s) held: {text}", details=details)


def check_plugins(engine: Any) -> Check:
    """Third-party plugins loaded, load errors, and accounts whose venue plugin is missing."""
    plugins = engine.plugins
    third = [p for p in plugins.plugins() if not p.builtin]
    errors = list(getattr(plugins, "load_errors", []))
    with use_database(engine.db):
        exchanges = {a.name: a.exchange for a in Account.select().where(Account.archived_at.is_null())}
    missing = sorted(f"{name} ({exchange})" for name, exchange in exchanges.items() if exchange not in plugins.exchanges)
    loaded = ", ".join(f"{p.name} ({p.source})" for p in third) or "none"
    details = {"third_party": [p.name for p in third],
               "load_errors": [{"plugin": e.plugin, "distribution": e.distribution, "error": e.error} for e in errors],
               "accounts_without_venue": missing}
    if missing:
        return Check("plugins", FAIL, f"no exchange plugin for account(s) {', '.join(missing)}; third-party: {loaded}",
                     "install the plugin (pip install …) or check TRADEGUARD_PLUGINS / disable_plugins", details)
    if errors:
        text = "; ".join(f"{e.plugin}: {e.error}" for e in errors)
        return Check("plugins", WARN, f"left out: {text}; third-party loaded: {loaded}",
                     "fix or uninstall the plugin (tradeguard plugins shows details)", details)
    if not plugins.third_party_enabled:
        return Check("plugins", OK, "third-party plugins disabled", details=details)
    return Check("plugins", OK, f"third-party loaded: {loaded}", details=details)


# -- the run ----------------------------------------------------------------------------


def run_checks(
    settings: Settings,
    open_engine: Callable[[], Any],
    *,
    master_key: Any = None,
    max_sync_age: str | None = None,
    max_backup_age: str | None = None,
    full_audit: bool = False,
    now: datetime | None = None,
) -> Report:
    """Run every check. *open_engine* opens the installation without migrating it."""
    now = now or utcnow()
    thresholds = Thresholds.from_settings(settings, max_sync_age=max_sync_age, max_backup_age=max_backup_age)
    report = Report()
    report.checks.append(check_permissions(settings))
    try:
        engine = open_engine()
    except TradeguardError as exc:
        report.checks.append(Check("database", FAIL, str(exc),
                                   "check the URL, that the server runs and accepts this user (docs/operations.md)"))
        return report
    database = check_database(engine)
    report.checks.append(database)
    if database.status == FAIL:
        return report
    report.checks.append(check_wal(engine, thresholds))
    for check in _guarded(engine, master_key, thresholds, now, full_audit):
        report.checks.append(check)
    return report


def diagnose(engine: Any, *, master_key: Any = None, full_audit: bool = False, now: datetime | None = None) -> Report:
    """Every check against an open Engine (the embedding form of ``tradeguard doctor``)."""
    return run_checks(engine.settings, lambda: engine, master_key=master_key, full_audit=full_audit, now=now)


def _guarded(engine: Any, master_key: Any, thresholds: Thresholds, now: datetime, full_audit: bool) -> Iterator[Check]:
    """The database checks; one that breaks becomes a failed line, not a crash."""
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("vault", lambda: check_vault(engine, master_key)),
        ("audit", lambda: check_audit(engine, full=full_audit)),
        ("sync", lambda: list(check_sync(engine, thresholds, now))),
        ("backup", lambda: check_backup(engine, thresholds, now)),
        ("trading_state", lambda: check_trading_state(engine)),
        ("orders", lambda: check_pending_orders(engine, thresholds, now)),
        ("runners", lambda: check_runners(engine, now)),
        ("plugins", lambda: check_plugins(engine)),
    ]
    for name, step in steps:
        try:
            result = step()
        except (TradeguardError, pw.DatabaseError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            result = Check(name, FAIL, f"check failed: {first}", "run with --debug for details")
        if isinstance(result, list):
            yield from result
        else:
            yield result
