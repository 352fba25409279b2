"""`tradeguard db prune`: retention for sync logs and snapshots; the record is never pruned."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ops_helpers import SNAPSHOTS, new_master_key, open_engine, populate, table_counts
from tradeguard.clock import utcnow
from tradeguard.dbcopy import table_digest
from tradeguard.retention import NEVER_PRUNED, PRUNABLE, prune, prune_if_due
from tradeguard.storage import use_database
from tradeguard.storage.models import ALL_MODELS, AuditLog, BalanceSnapshot, PositionSnapshot, SyncLog


@pytest.fixture
def key() -> str:
    return new_master_key()


@pytest.fixture
def installation(db_url: str, home: Path, key: str) -> dict[str, Any]:
    with open_engine(db_url, home, key) as engine:
        populate(engine)
    return {"url": db_url}


def digests(engine: Any, tables: tuple[str, ...]) -> dict[str, tuple[int, str]]:
    return {m._meta.table_name: table_digest(engine.db, m) for m in ALL_MODELS if m._meta.table_name in tables}


def test_every_table_is_either_prunable_or_never_pruned_on_purpose():
    prunable = {p.table for p in PRUNABLE}
    assert prunable == {"sync_log", "balance_snapshot", "position_snapshot"}
    for table in ("order", "trade", "cash_flow", "risk_log", "emergency_event", "audit_log", "audit_checkpoint"):
        assert table in NEVER_PRUNED and table not in prunable


def test_dry_run_counts_and_deletes_nothing(cli, installation, home):
    with open_engine(installation["url"], home) as engine:
        before = table_counts(engine.db)
    out = cli.json("db", "prune", "--dry-run")
    tables = {t["table"]: t for t in out["tables"]}
    # populate(): per account 4 sync logs (200d, 100d, 95d failed, now): three are past 90d
    # (each account's newest row, and newest good row, is the one from now)
    assert tables["sync_log"]["would_delete"] == 6
    assert tables["balance_snapshot"]["would_delete"] == SNAPSHOTS // 2
    assert tables["position_snapshot"]["would_delete"] == 1
    assert out["dry_run"] is True and out["total"] == 6 + SNAPSHOTS // 2 + 1
    with open_engine(installation["url"], home) as engine:
        assert table_counts(engine.db) == before


def test_prune_deletes_only_old_log_rows_and_is_audited(cli, installation, home, key, monkeypatch):
    import tradeguard.retention as retention

    monkeypatch.setattr(retention, "BATCH", 100)  # several batches
    with open_engine(installation["url"], home) as engine:
        kept = digests(engine, NEVER_PRUNED)
        before = table_counts(engine.db)
    result = cli("db", "prune")
    assert result.exit_code == 0, result.output
    assert f"deleted {6 + SNAPSHOTS // 2 + 1} rows" in result.stdout and "audit_log" in result.stdout
    with open_engine(installation["url"], home) as engine:  # no key: unlocking would add a checkpoint
        after = table_counts(engine.db)
        assert after["sync_log"] == before["sync_log"] - 6
        assert after["balance_snapshot"] == before["balance_snapshot"] - SNAPSHOTS // 2
        assert after["position_snapshot"] == before["position_snapshot"] - 1
        # the record is untouched (audit_log grew by the two prune entries, nothing else changed)
        now = digests(engine, NEVER_PRUNED)
        for table in NEVER_PRUNED:
            if table != "audit_log":
                assert now[table] == kept[table], table
        cutoff = utcnow() - timedelta(days=90)
        with use_database(engine.db):
            assert not BalanceSnapshot.select().where(BalanceSnapshot.taken_at < cutoff).exists()
            assert not SyncLog.select().where(SyncLog.started_at < cutoff).exists()
            actions = [e.action for e in AuditLog.select().order_by(AuditLog.seq.desc()).limit(2)]
        assert actions == ["db.prune", "db.prune.start"]
    with open_engine(installation["url"], home, key) as engine:
        report = engine.audit.verify(record=False)
        assert report.ok and report.keyed, report.message
    again = cli.json("db", "prune")
    assert again["total"] == 0


def test_the_newest_rows_of_each_account_are_kept_however_old(cli, db_url, home):
    with open_engine(db_url, home) as engine:
        engine.accounts.add("quiet", "paper")
        old = utcnow() - timedelta(days=400)
        with use_database(engine.db):
            from tradeguard.storage.models import Account

            quiet = Account.get(Account.name == "quiet")
            SyncLog.create(account=quiet, sync_type="full", source="api", status="ok", started_at=old)
            SyncLog.create(account=quiet, sync_type="full", source="api", status="failed", started_at=old + timedelta(days=1))
            for days in (3, 2, 1):
                PositionSnapshot.create(account=quiet, symbol="BTC/USDT", quantity=1, average_cost=1, source="sync",
                                        taken_at=old + timedelta(days=days))
            # the last balance set (two assets, one sync) and an older one
            for at in (old, old + timedelta(days=5)):
                for asset in ("BTC", "USDT"):
                    BalanceSnapshot.create(account=quiet, asset=asset, free=1, used=0, total=1, source="sync",
                                           taken_at=at)
    out = cli.json("db", "prune")
    assert {t["table"]: t["deleted"] for t in out["tables"]} == {"sync_log": 0, "balance_snapshot": 2,
                                                                 "position_snapshot": 2}
    with open_engine(db_url, home) as engine, use_database(engine.db):
        # the last good sync (doctor reports its age) and the last failure both stay
        assert SyncLog.select().count() == 2
        assert PositionSnapshot.select().count() == 1
        # sync compares against the newest balance set: every asset of it is still there
        assert sorted((b.asset, b.taken_at) for b in BalanceSnapshot.select()) == [
            ("BTC", old + timedelta(days=5)), ("USDT", old + timedelta(days=5))]


def test_retention_per_table_from_settings_and_older_than(cli, installation):
    out = cli.json("db", "prune", "--dry-run", env={"TRADEGUARD_RETENTION_SYNC_LOG": "97d",
                                                    "TRADEGUARD_RETENTION_BALANCE_SNAPSHOT": "365d"})
    tables = {t["table"]: t for t in out["tables"]}
    assert tables["sync_log"]["retention"] == "97d" and tables["sync_log"]["would_delete"] == 4
    assert tables["balance_snapshot"]["would_delete"] == 0
    out = cli.json("db", "prune", "--dry-run", "--older-than", "150d")
    assert {t["table"]: t["would_delete"] for t in out["tables"]} == {
        "sync_log": 2, "balance_snapshot": SNAPSHOTS // 2, "position_snapshot": 1}


@pytest.mark.parametrize("args,env,text", [
    (["--older-than", "0d"], {}, "shorter than the minimum retention of 1d"),
    (["--older-than", "12h"], {}, "shorter than the minimum"),
    (["--older-than", "ninety days"], {}, "--older-than: expected a duration"),
    ([], {"TRADEGUARD_RETENTION_POSITION_SNAPSHOT": "forever"}, "retention_position_snapshot"),
])
def test_bad_retention_is_refused_and_deletes_nothing(cli, installation, home, args, env, text):
    with open_engine(installation["url"], home) as engine:
        before = table_counts(engine.db)
    result = cli("db", "prune", *args, env=env)
    assert result.exit_code == 2 and text in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with open_engine(installation["url"], home) as engine:
        assert table_counts(engine.db) == before


def test_prune_if_due_runs_once_per_interval(installation, home):
    with open_engine(installation["url"], home) as engine:
        first = prune_if_due(engine, every=timedelta(hours=1))
        assert first is not None and first.total == 6 + SNAPSHOTS // 2 + 1
        assert prune_if_due(engine, every=timedelta(hours=1)) is None
        assert prune(engine, dry_run=True).total == 0


# -- archiving the audit trail (never deleting it) --------------------------------------------


def test_audit_archive_proves_what_was_archived(cli, installation, home, key, tmp_path):
    import json
    import os

    out = tmp_path / "archive" / "audit-q1.jsonl"
    out.parent.mkdir()
    env = {"TRADEGUARD_MASTER_KEY": key}
    assert cli("audit", "archive", "-o", str(out)).exit_code == 2  # the checkpoint needs the master key
    assert not out.exists()
    manifest = cli.json("audit", "archive", "-o", str(out), env=env)
    sidecar = out.with_name("audit-q1.manifest.json")
    assert oct(out.stat().st_mode & 0o777) == "0o600" and oct(sidecar.stat().st_mode & 0o777) == "0o600"
    lines = out.read_text().splitlines()
    assert len(lines) == manifest["entries"] == manifest["last_seq"]
    assert json.loads(lines[-1])["hash"] == manifest["head_hash"] == manifest["checkpoint"]["head_hash"]

    with open_engine(installation["url"], home) as engine, use_database(engine.db):
        recorded = AuditLog.select().where(AuditLog.action == "audit.archive").get()
        assert json.loads(recorded.payload)["sha256"] == manifest["sha256"]
        assert AuditLog.select().count() > manifest["entries"]  # nothing was removed from the database

    checked = cli.json("audit", "check-archive", str(out), env=env)
    assert checked["seal_checked"] and checked["entries"] == manifest["entries"]
    assert cli.json("audit", "check-archive", str(out), "--offline")["database_checked"] is False
    again = cli("audit", "archive", "-o", str(out), env=env)
    assert again.exit_code == 2 and "never overwritten" in again.stderr

    # a changed line is named; so is a manifest that no longer matches
    tampered = tmp_path / "archive" / "tampered.jsonl"
    rows = [json.loads(line) for line in lines]
    rows[2]["actor"] = "mallory"
    tampered.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows))
    tampered.with_name("tampered.manifest.json").write_text(sidecar.read_text())
    bad = cli("audit", "check-archive", str(tampered), "--offline")
    assert bad.exit_code == 4 and "entry 3 was changed" in bad.stderr
    os.chmod(sidecar, 0o600)
    data = json.loads(sidecar.read_text())
    data["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(data))
    bad = cli("audit", "check-archive", str(out), "--offline")
    assert bad.exit_code == 4 and "SHA-256 differs" in bad.stderr


def test_check_archive_notices_history_rewritten_after_the_archive(cli, installation, home, key, tmp_path):
    out = tmp_path / "a.jsonl"
    env = {"TRADEGUARD_MASTER_KEY": key}
    manifest = cli.json("audit", "archive", "-o", str(out), env=env)
    with open_engine(installation["url"], home) as engine, use_database(engine.db):
        AuditLog.update(hash="f" * 64).where(AuditLog.seq == manifest["last_seq"]).execute()
    bad = cli("audit", "check-archive", str(out))
    assert bad.exit_code == 4 and "rewritten" in bad.stderr
