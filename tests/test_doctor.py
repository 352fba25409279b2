"""`tradeguard doctor`: one line per check, ok/warn/fail with the fix, exit 1 on any fail."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ops_helpers import new_master_key, open_engine, populate
from tradeguard.clock import utcnow
from tradeguard.storage import migrations, use_database
from tradeguard.storage.models import Account, AuditLog, Backup, Order, RunnerLease, Setting, SyncLog
from tradeguard.types import OrderStatus, OrderType, Side, TradingMode, TradingState


def doctor(cli: Any, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    result = cli("doctor", "--json", *args, env=env)
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    assert data["ok"] is (result.exit_code == 0)
    return result.exit_code, {c["name"]: c for c in data["checks"]}


@pytest.fixture
def key() -> str:
    return new_master_key()


@pytest.fixture
def healthy(db_url: str, home: Path, key: str) -> str:
    """A small, healthy installation: one paper account, a fresh backup, a sealed audit trail."""
    with open_engine(db_url, home, key) as engine:
        engine.accounts.add("main", "paper", initial_capital="1000")
        engine.vault.set_credentials("main", {"api_key": "k", "api_secret": "s"})
        with use_database(engine.db):
            Backup.create(target="file:///b", name="tg-1.tgb", sha256="0" * 64, db_kind=engine.backend,
                          schema_version=migrations.head(), status="verified")
        engine.audit.checkpoint("test")
        engine.accounts.set("main", max_daily_loss="50")
    return db_url


def test_a_healthy_installation_passes(cli, healthy, key):
    env = {"TRADEGUARD_MASTER_KEY": key}
    code, checks = doctor(cli, env=env)
    assert code == 0
    assert {c["status"] for c in checks.values()} <= {"ok", "skip"}, checks
    for name in ("permissions", "database", "wal", "vault", "audit", "sync:main", "backup", "trading_state",
                 "orders", "runners", "plugins"):
        assert name in checks
    assert "seals checked" in checks["audit"]["message"]
    assert "from checkpoint" in checks["audit"]["message"]  # incremental by default

    text = cli("doctor", env=env)
    assert text.exit_code == 0
    lines = text.stdout.strip().splitlines()
    assert len(lines) == len(checks) + 1  # one line per check and a summary
    assert all(line.split()[0] in ("OK", "SKIP") for line in lines[:-1])
    assert "0 failures" in lines[-1]


def test_master_key_wrong_or_missing(cli, healthy, key):
    code, checks = doctor(cli)
    assert code == 0 and checks["vault"]["status"] == "skip" and "TRADEGUARD_MASTER_KEY" in checks["vault"]["fix"]
    assert "seals not checked" in checks["audit"]["message"]
    code, checks = doctor(cli, env={"TRADEGUARD_MASTER_KEY": new_master_key()})
    assert code == 1 and checks["vault"]["status"] == "fail"
    assert key not in json.dumps(checks)


def test_operator_findings_warn_and_stuck_orders_fail(cli, db_url, home, key):
    with open_engine(db_url, home, key) as engine:
        populate(engine)  # a stale runner lease, a 200-day-old backup, accounts synced just now
    code, checks = doctor(cli)
    assert code == 0, checks
    assert checks["runners"]["status"] == "warn" and "spare by host-a:123" in checks["runners"]["message"]
    assert checks["backup"]["status"] == "warn" and "tg-old.tgb" in checks["backup"]["message"]
    assert checks["sync:main"]["status"] == "ok"

    with open_engine(db_url, home) as engine, use_database(engine.db):
        spare = Account.get(Account.name == "spare")
        for client_id, minutes in (("stuck-1", 30), ("fresh-1", 1)):
            Order.create(account=spare, client_order_id=client_id, symbol="BTC/USDT", side=Side.BUY,
                         type=OrderType.MARKET, quantity=Decimal("0.001"), status=OrderStatus.PENDING_SUBMIT,
                         created_by="test", created_at=utcnow() - timedelta(minutes=minutes))
    code, checks = doctor(cli)
    assert code == 1
    assert checks["orders"]["status"] == "fail"
    assert checks["orders"]["details"]["orders"] == ["stuck-1"]
    assert "tradeguard sync spare" in checks["orders"]["fix"]
    text = cli("doctor")
    assert text.exit_code == 1 and any(line.startswith("FAIL  orders") and "-> " in line
                                       for line in text.stdout.splitlines())


def test_sync_age_live_fails_paper_warns(cli, db_url, home):
    with open_engine(db_url, home) as engine:
        engine.accounts.add("live-one", "paper")
        engine.accounts.add("paper-one", "paper")
        with use_database(engine.db):
            Account.update(mode=TradingMode.LIVE).where(Account.name == "live-one").execute()
            for account in Account.select():
                SyncLog.create(account=account, sync_type="full", source="api", status="ok",
                               started_at=utcnow() - timedelta(hours=3))
    code, checks = doctor(cli)
    assert code == 1
    assert checks["sync:live-one"]["status"] == "fail" and checks["sync:paper-one"]["status"] == "warn"
    assert checks["sync:live-one"]["fix"] == "tradeguard sync live-one"
    code, checks = doctor(cli, "--max-sync-age", "4h")
    assert code == 0 and checks["sync:live-one"]["status"] == "ok"
    code, checks = doctor(cli, env={"TRADEGUARD_DOCTOR_MAX_SYNC_AGE": "2d"})
    assert code == 0


def test_halted_and_reducing_are_reported(cli, db_url, home):
    with open_engine(db_url, home) as engine:
        engine.accounts.add("a", "paper")
        engine.accounts.add("b", "paper")
        with use_database(engine.db):
            Account.update(trading_state=TradingState.HALTED).where(Account.name == "a").execute()
        engine.set_setting("trading_state", {"state": "REDUCING"})
    code, checks = doctor(cli)
    assert code == 0
    state = checks["trading_state"]
    assert state["status"] == "warn" and "installation REDUCING" in state["message"] and "a HALTED" in state["message"]
    assert "resume" in state["fix"]


def test_audit_tampering_fails_full_check_finds_older_edits(cli, db_url, home, key):
    with open_engine(db_url, home, key) as engine:
        engine.accounts.add("a", "paper")
        engine.accounts.add("b", "paper")
        engine.audit.checkpoint("test")
        engine.accounts.add("c", "paper")
        with use_database(engine.db):
            head = AuditLog.select().order_by(AuditLog.seq.desc()).first()
            first = AuditLog.select().order_by(AuditLog.seq).first()
    env = {"TRADEGUARD_MASTER_KEY": key}
    assert doctor(cli, env=env)[0] == 0

    with open_engine(db_url, home) as engine, use_database(engine.db):
        AuditLog.update(payload='{"forged":true}').where(AuditLog.seq == first.seq).execute()
    code, checks = doctor(cli, env=env)
    assert code == 0, "an edit before the last sealed checkpoint is for `audit verify` / --full-audit"
    code, checks = doctor(cli, "--full-audit", env=env)
    assert code == 1 and checks["audit"]["status"] == "fail" and checks["audit"]["details"]["bad_seq"] == first.seq

    with open_engine(db_url, home) as engine, use_database(engine.db):
        AuditLog.update(actor="mallory").where(AuditLog.seq == head.seq).execute()
    code, checks = doctor(cli, env=env)
    assert code == 1 and checks["audit"]["details"]["bad_seq"] == head.seq
    assert "audit verify" in checks["audit"]["fix"]


def test_file_permissions(sqlite_cli, home):
    assert sqlite_cli("init").exit_code == 0
    code, checks = doctor(sqlite_cli)
    assert code == 0 and checks["permissions"]["status"] == "ok"
    db_file = home / "tradeguard.db"
    os.chmod(db_file, 0o644)
    os.chmod(home, 0o755)
    try:
        code, checks = doctor(sqlite_cli)
        assert code == 1
        perm = checks["permissions"]
        assert perm["status"] == "fail" and f"chmod 600 {db_file}" in perm["fix"] and f"chmod 700 {home}" in perm["fix"]
    finally:
        os.chmod(home, 0o700)
    os.chmod(db_file, 0o600)
    key_file = home / "master.key"
    key_file.write_bytes(os.urandom(32))
    os.chmod(key_file, 0o640)
    code, checks = doctor(sqlite_cli, env={"TRADEGUARD_MASTER_KEY_FILE": str(key_file)})
    assert code == 1 and str(key_file) in checks["permissions"]["message"]


def test_wal_size_threshold(sqlite_cli, home):
    assert sqlite_cli("init").exit_code == 0
    with open_engine(f"sqlite:///{home / 'tradeguard.db'}", home) as engine:
        engine.accounts.add("keeps-the-wal", "paper")  # an open connection with a non-empty WAL
        code, checks = doctor(sqlite_cli, env={"TRADEGUARD_DOCTOR_MAX_WAL_MB": "0"})
        assert checks["wal"]["status"] == "warn" and "wal_checkpoint" in checks["wal"]["fix"]
        assert code == 0


def test_wal_not_applicable_on_postgres(cli, db_url):
    assert cli("init").exit_code == 0
    code, checks = doctor(cli)
    if db_url.startswith("postgres"):
        assert checks["wal"]["status"] == "skip"
    else:
        assert checks["wal"]["status"] == "ok"


def test_unreachable_or_outdated_database(cli, db_url, home):
    code, checks = doctor(cli, env={"TRADEGUARD_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"})
    assert code == 1 and checks["database"]["status"] == "fail" and "cannot reach" in checks["database"]["message"]
    assert "vault" not in checks

    code, checks = doctor(cli)  # a database with no tradeguard schema
    assert code == 1 and checks["database"]["fix"] == "tradeguard init"

    assert cli("init").exit_code == 0
    with open_engine(db_url, home) as engine, use_database(engine.db):
        migrations.downgrade(engine.db, migrations.head() - 1)
    code, checks = doctor(cli)
    assert code == 1 and "tradeguard db migrate" in checks["database"]["fix"]


def test_account_without_its_venue_plugin_fails(cli, db_url, home):
    with open_engine(db_url, home) as engine:
        engine.accounts.add("a", "paper")
        with use_database(engine.db):
            Account.update(exchange="kraken-plugin").where(Account.name == "a").execute()
    code, checks = doctor(cli)
    assert code == 1 and checks["plugins"]["status"] == "fail" and "a (kraken-plugin)" in checks["plugins"]["message"]


def test_plugin_load_errors_warn(db_url, home):
    from tradeguard.config import load_settings
    from tradeguard.doctor import run_checks
    from tradeguard.plugin_manager import LoadError

    settings = load_settings(cli={"home": str(home), "database_url": db_url})
    engine = open_engine(db_url, home)
    try:
        engine.plugins.load_errors.append(LoadError("broken", "tradeguard-broken", "ImportError: no module named x"))
        report = run_checks(settings, lambda: engine)
    finally:
        engine.close()
    plugins = {c.name: c for c in report.checks}["plugins"]
    assert plugins.status == "warn" and "broken: ImportError" in plugins.message
    assert not report.failed


def test_bad_threshold_is_a_clear_input_error(cli, db_url):
    result = cli("doctor", env={"TRADEGUARD_DOCTOR_MAX_SYNC_AGE": "soon"})
    assert result.exit_code == 2 and "doctor_max_sync_age" in result.stderr
    result = cli("doctor", "--max-backup-age", "-1d")
    assert result.exit_code == 2 and "--max-backup-age" in result.stderr


def test_diagnose_an_embedded_engine(engine):
    from tradeguard.doctor import diagnose

    engine.accounts.add("main", "paper")
    report = diagnose(engine)
    names = [c.name for c in report.checks]
    assert names[:2] == ["permissions", "database"] and "sync:main" in names and "plugins" in names
    assert not report.failed and report.as_dict()["ok"] is True, report.as_dict()
