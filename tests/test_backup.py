"""Backups end to end: round trips on both backends, tampering, wrong keys, in-place restore,
retention, secrets, file modes, consistency under writes and the backup before a migration."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backup_helpers import PASSPHRASE, SECRET, at_snapshot, chunks, fill, flip, table_rows
from tradeguard import Engine
from tradeguard.backup import retention
from tradeguard.errors import ValidationError, WrongMasterKey
from tradeguard.storage import connect

SMALL_CHUNK = 4096


@pytest.fixture
def target(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'backups'}"


def open_engine(url: str, home: Path, key=PASSPHRASE) -> Engine:
    return Engine.open(url, home=home, master_key=key, load_entrypoints=False)


def rows_of(url: str) -> dict:
    db = connect(url)
    try:
        return table_rows(db)
    finally:
        db.close()


def destroy(url: str, request) -> None:
    """Lose the database: delete the SQLite file, or drop every PostgreSQL table."""
    if url.startswith("sqlite"):
        path = Path(url[len("sqlite:///"):])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        from conftest import reset_postgres

        reset_postgres(request.getfixturevalue("postgres_server"))


def env(target: str, key: str | None = PASSPHRASE) -> dict[str, str]:
    out = {"TRADEGUARD_BACKUP_TARGET": target}
    if key is not None:
        out["TRADEGUARD_MASTER_KEY"] = key
    return out


# -- round trip ----------------------------------------------------------------------------------


def test_round_trip_from_the_target_alone(db_url, home, target, cli, request):
    with open_engine(db_url, home) as engine:
        fill(engine)
        made = engine.backups.create(target)
        expected = at_snapshot(rows_of(db_url), made["audit_seq"])
    assert made["db_kind"] == ("sqlite" if db_url.startswith("sqlite") else "postgres")

    destroy(db_url, request)
    restored_url = db_url if db_url.startswith("postgres") else f"sqlite:///{home / 'restored.db'}"
    to = restored_url if db_url.startswith("postgres") else str(home / "restored.db")
    result = cli.json("backup", "restore", made["id"], "--to", to, env=env(target))
    assert result["checks"]["sha256"] == "ok" and result["checks"]["audit"] == "ok"

    assert rows_of(restored_url) == expected
    with open_engine(restored_url, home) as restored:
        report = restored.audit.verify(record=False)
        assert report.ok, report.message
        assert report.head == made["audit_head"]
        assert restored.vault.check("acct0")  # the credentials decrypt with the same master key


def test_in_place_restore_replaces_the_database(db_url, home, target, cli):
    with open_engine(db_url, home) as engine:
        fill(engine, accounts=2)
        made = engine.backups.create(target)
        before = at_snapshot(rows_of(db_url), made["audit_seq"])
        engine.accounts.add("added-later", "paper")
    result = cli.json("backup", "restore", made["id"], "--in-place", "--yes", env=env(target))
    assert result["in_place"] is True
    after = rows_of(db_url)
    assert [r for r in after["account"]] == before["account"]
    assert after["audit_log"][: len(before["audit_log"])] == before["audit_log"]
    with open_engine(db_url, home) as engine:
        assert "added-later" not in [a.name for a in engine.accounts.list()]
        assert engine.audit.verify(record=False).ok
        assert [b["id"] for b in engine.backups.list(target) if b["verified_at"]] == [made["id"]]
    if db_url.startswith("sqlite"):
        assert not list(home.parent.glob("*.pre-restore-*"))  # the old file is gone once the restore succeeded


# -- tampering --------------------------------------------------------------------------------


def _backups(db_url: str, home: Path, target: str, count: int = 2) -> list[dict]:
    with open_engine(db_url, home) as engine:
        fill(engine, accounts=1, blob_kb=24)
        engine.backups.chunk_size = SMALL_CHUNK
        return [engine.backups.create(target) for _ in range(count)]


def _tamper(kind: str, folder: Path, ids: list[str]) -> None:
    data, manifest = folder / f"{ids[0]}.tgb", folder / f"{ids[0]}.tgm"
    header, parts = chunks(data, SMALL_CHUNK)
    assert len(parts) >= 4
    if kind == "flip-header":
        flip(data, 40)
    elif kind == "flip-middle":
        flip(data, data.stat().st_size // 2)
    elif kind == "flip-last":
        flip(data, data.stat().st_size - 1)
    elif kind == "truncate":
        data.write_bytes(header + b"".join(parts[:-1]))
    elif kind == "truncate-mid-chunk":
        data.write_bytes(data.read_bytes()[:-100])
    elif kind == "drop-chunk":
        data.write_bytes(header + b"".join(parts[:1] + parts[2:]))
    elif kind == "swap-chunks":
        data.write_bytes(header + b"".join([parts[0], parts[2], parts[1], *parts[3:]]))
    elif kind == "swap-manifest":
        shutil.copyfile(folder / f"{ids[1]}.tgm", manifest)
    elif kind == "swap-data":
        shutil.copyfile(folder / f"{ids[1]}.tgb", data)
    elif kind == "flip-manifest":
        flip(manifest, manifest.stat().st_size - 5)
    elif kind == "flip-manifest-header":
        flip(manifest, 60)
    else:
        raise AssertionError(kind)


TAMPERING = ["flip-header", "flip-middle", "flip-last", "truncate", "truncate-mid-chunk", "drop-chunk", "swap-chunks",
             "swap-manifest", "swap-data", "flip-manifest", "flip-manifest-header"]


@pytest.mark.parametrize("kind", TAMPERING)
def test_tampered_backup_is_refused_and_nothing_changes(kind, home, target, sqlite_cli, tmp_path):
    db_url = f"sqlite:///{home / 'tradeguard.db'}"
    made = _backups(db_url, home, target)
    _tamper(kind, Path(target[len("file://"):]), [m["id"] for m in made])
    before = rows_of(db_url)

    verify = sqlite_cli("backup", "verify", made[0]["id"], env=env(target))
    assert verify.exit_code == 4, verify.output
    assert verify.output.count("\n") == 1 and "error:" in verify.output
    restore = sqlite_cli("backup", "restore", made[0]["id"], "--in-place", "--yes", env=env(target))
    assert restore.exit_code == 4, restore.output
    to = sqlite_cli("backup", "restore", made[0]["id"], "--to", str(tmp_path / "r.db"), env=env(target))
    assert to.exit_code == 4 and not (tmp_path / "r.db").exists()

    after = rows_of(db_url)
    changed = {t for t in before if before[t] != after[t]}
    assert changed <= {"backup", "audit_log", "audit_checkpoint"}  # bookkeeping only: verify outcome, unlock
    assert after["audit_log"][: len(before["audit_log"])] == before["audit_log"]
    conn = sqlite3.connect(home / "tradeguard.db")
    assert conn.execute("SELECT status FROM backup WHERE name = ?", (made[0]["id"],)).fetchall() == [("failed",)]
    conn.close()
    assert not list(home.glob(".tradeguard-backup-*"))  # scratch files are removed


def test_tampered_postgres_backup_is_refused(pg_url, home, target):
    from conftest import Cli

    cli = Cli(home, pg_url)
    made = _backups(pg_url, home, target)
    _tamper("flip-middle", Path(target[len("file://"):]), [m["id"] for m in made])
    before = rows_of(pg_url)
    result = cli("backup", "restore", made[0]["id"], "--in-place", "--yes", env=env(target))
    assert result.exit_code == 4, result.output
    assert rows_of(pg_url)["account"] == before["account"]


# -- keys ---------------------------------------------------------------------------------------


def test_wrong_master_key_is_a_clear_error_that_changes_nothing(home, target, sqlite_cli, tmp_path):
    db_url = f"sqlite:///{home / 'tradeguard.db'}"
    made = _backups(db_url, home, target, count=1)[0]
    before = rows_of(db_url)
    for args in (["--to", str(tmp_path / "r.db")], ["--in-place", "--yes"]):
        result = sqlite_cli("backup", "restore", made["id"], *args, env=env(target, "not the passphrase"))
        assert result.exit_code == 2, result.output
        assert "wrong master key" in result.output
        assert "not the passphrase" not in result.output
    assert not (tmp_path / "r.db").exists()
    assert rows_of(db_url)["account"] == before["account"]
    # a key file where a passphrase was used is refused the same way
    with pytest.raises(WrongMasterKey):
        from tradeguard.backup.pipeline import open_backup
        from tradeguard.backup.targets import open_target
        from tradeguard.plugin_manager import PluginManager

        open_backup(open_target(PluginManager(load_entrypoints=False), target), made["id"], os.urandom(32))


def test_backup_needs_the_master_key(home, target, sqlite_cli):
    with open_engine(f"sqlite:///{home / 'tradeguard.db'}", home):
        pass
    result = sqlite_cli("backup", "create", env=env(target, key=None))
    assert result.exit_code == 2 and "master key" in result.output
    assert not Path(target[len("file://"):]).exists() or not os.listdir(target[len("file://"):])


def test_the_secret_never_appears_in_backup_files(home, target):
    import base64
    import binascii

    from tradeguard.vault.kdf import derive
    from tradeguard.vault.keys import MasterRecord

    with open_engine(f"sqlite:///{home / 'tradeguard.db'}", home) as engine:
        fill(engine, accounts=1)
        made = engine.backups.create(target)
        keys = [k.material for k in engine.vault._keys.values()]
        master = derive(PASSPHRASE.encode(), MasterRecord.from_dict(engine.get_setting("vault.master")).kdf)
    folder = Path(target[len("file://"):])
    needles = []
    for value in (SECRET.encode(), ("s3cr3t-" + SECRET[::-1]).encode(), PASSPHRASE.encode(), master, *keys):
        needles += [value, base64.b64encode(value), base64.b64encode(value)[:-4], binascii.hexlify(value),
                    binascii.hexlify(value).upper(), base64.urlsafe_b64encode(value)[:-4]]
    files = list(folder.iterdir())
    assert {f.name for f in files} == {f"{made['id']}.tgb", f"{made['id']}.tgm"}
    for path in files:
        blob = path.read_bytes()
        for needle in needles:
            assert needle not in blob, (path.name, needle[:6])


def test_backup_files_are_private_and_partials_are_not_listed(home, target):
    with open_engine(f"sqlite:///{home / 'tradeguard.db'}", home) as engine:
        made = engine.backups.create(target)
        folder = Path(target[len("file://"):])
        (folder / f".tmp-{made['id']}x.tgb.1234").write_bytes(b"partial")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for path in folder.glob("tg-*"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [b["id"] for b in engine.backups.list(target)] == [made["id"]]


# -- consistency --------------------------------------------------------------------------------


def test_snapshot_is_consistent_while_a_writer_keeps_committing(home, target):
    url = f"sqlite:///{home / 'tradeguard.db'}"
    with open_engine(url, home) as engine:
        fill(engine, accounts=1, blob_kb=2048)
        stop = threading.Event()
        written = []

        def writer() -> None:
            with open_engine(url, home, key=None) as other:
                i = 0
                while not stop.is_set():
                    other.accounts.add(f"w{i}", "paper")  # an account row and its audit entry, one transaction
                    written.append(i)
                    i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            made = engine.backups.create(target)
        finally:
            stop.set()
            thread.join()
        report = engine.backups.verify(made["id"], target)
    assert written and report["checks"]["integrity_check"] == "ok" and report["checks"]["audit"] == "ok"


# -- retention ----------------------------------------------------------------------------------


def test_retention_plan_is_restic_style():
    now = datetime(2026, 3, 20, 12, tzinfo=timezone.utc)
    backups = [{"id": f"b{i:02d}", "created": now - timedelta(hours=12 * i), "verified": i == 9} for i in range(20)]
    plan = retention.plan(backups, keep_last=2, keep_daily=3, keep_weekly=2)
    kept = set(plan.keep)
    assert {"b00", "b01"} <= kept  # last 2
    assert {"b00", "b02", "b04"} <= kept  # newest of each of the 3 newest days (b01 is 03-20 00:00)
    assert "b09" in kept and "newest verified" in plan.keep["b09"]
    assert set(plan.remove) == {b["id"] for b in backups} - kept
    with pytest.raises(ValidationError):
        retention.plan(backups)


def test_prune_never_deletes_the_newest_verified_backup(home, target, sqlite_cli):
    with open_engine(f"sqlite:///{home / 'tradeguard.db'}", home) as engine:
        made = [engine.backups.create(target) for _ in range(4)]
        engine.backups.verify(made[1]["id"], target)
    dry = sqlite_cli.json("backup", "prune", "--keep-last", "1", "--dry-run", env=env(target))
    assert set(dry["remove"]) == {made[0]["id"], made[2]["id"]}
    assert len(os.listdir(target[len("file://"):])) == 8
    done = sqlite_cli.json("backup", "prune", "--keep-last", "1", env=env(target))
    assert done["remove"] == dry["remove"]
    listed = sqlite_cli.json("backup", "list", env=env(target))
    assert [b["id"] for b in listed] == [made[3]["id"], made[1]["id"]]
    assert sqlite_cli("backup", "prune", env=env(target)).exit_code == 2


# -- CLI contract -------------------------------------------------------------------------------


def test_cli_refuses_bad_input(home, target, sqlite_cli, tmp_path):
    with open_engine(f"sqlite:///{home / 'tradeguard.db'}", home) as engine:
        made = engine.backups.create(target)
    existing = tmp_path / "exists.db"
    existing.write_bytes(b"keep me")
    cases = [
        (["backup", "restore", made["id"]], "exactly one"),
        (["backup", "restore", made["id"], "--to", str(existing), "--in-place", "--yes"], "exactly one"),
        (["backup", "restore", made["id"], "--to", str(existing)], "exists"),
        (["backup", "verify", "tg-nope"], "no backup"),
        (["backup", "list", "--target", "ftp://host/x"], "unknown backup target"),
        (["backup", "list", "--target", "file://relative/path"], "file:///"),
    ]
    for args, message in cases:
        result = sqlite_cli(*args, env=env(target))
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert existing.read_bytes() == b"keep me"


def test_list_and_restore_work_without_the_database(home, target, sqlite_cli, tmp_path):
    with open_engine(f"sqlite:///{home / 'tradeguard.db'}", home) as engine:
        fill(engine, accounts=1)
        made = engine.backups.create(target)
    (home / "tradeguard.db").unlink()
    listed = sqlite_cli.json("backup", "list", env=env(target))
    assert [(b["id"], b["status"], b["audit_seq"]) for b in listed] == [(made["id"], "ok", made["audit_seq"])]
    unkeyed = sqlite_cli.json("backup", "list", env=env(target, key=None))
    assert [(b["id"], b["status"]) for b in unkeyed] == [(made["id"], "complete")]
    verified = sqlite_cli.json("backup", "verify", made["id"][:20], env=env(target))
    assert verified["id"] == made["id"]
    assert not (home / "tradeguard.db").exists()  # neither command created a database


# -- before a migration -------------------------------------------------------------------------


def _outdated_db(home: Path) -> tuple[str, int]:
    from tradeguard.storage import migrations, use_database

    url = f"sqlite:///{home / 'tradeguard.db'}"
    with open_engine(url, home) as engine:
        fill(engine, accounts=1)
        engine.set_profile("production")
        head = migrations.head()
        with use_database(engine.db):
            migrations.downgrade(engine.db, head - 1)
    return url, head


def test_migrate_backs_up_an_existing_database_first(home, target, sqlite_cli):
    _, head = _outdated_db(home)
    result = sqlite_cli.json("db", "migrate", env=env(target))
    assert result["to"] == head
    saved = result["backup"]
    assert saved["kind"] == "encrypted" and saved["where"].endswith(saved["id"])
    listed = sqlite_cli.json("backup", "list", env=env(target))
    assert [(b["id"], b["status"], b["schema_version"]) for b in listed] == [(saved["id"], "ok", head - 1)]
    text = sqlite_cli("db", "migrate", env=env(target))
    assert "up to date" in text.output and "backed up" not in text.output  # nothing to migrate, no backup


def test_migrate_without_the_master_key_keeps_a_private_snapshot(home, target, sqlite_cli):
    _, head = _outdated_db(home)
    result = sqlite_cli("db", "migrate", env=env(target, key=None))
    assert result.exit_code == 0, result.output
    snaps = list(home.glob("tradeguard.db.pre-migration-v*"))
    assert len(snaps) == 1 and str(snaps[0]) in result.output
    assert stat.S_IMODE(snaps[0].stat().st_mode) == 0o600
    conn = sqlite3.connect(snaps[0])
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == head - 1
    assert conn.execute("SELECT name FROM account").fetchall() == [("acct0",)]
    assert SECRET.encode() not in snaps[0].read_bytes()  # credentials stay vault-encrypted
    conn.close()


# -- PostgreSQL tools -----------------------------------------------------------------------------


def test_missing_or_old_pg_dump_is_a_clear_error(monkeypatch):
    from tradeguard.backup import snapshot

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("TRADEGUARD_PG_BIN", raising=False)
    monkeypatch.setattr(snapshot.glob, "glob", lambda pattern: [])
    with pytest.raises(snapshot.PgToolMissing, match="pg_dump not found: install the PostgreSQL 15 client"):
        snapshot.find_pg_tool("pg_dump", 15)
    monkeypatch.setenv("PATH", os.path.dirname(shutil.which("true") or "/usr/bin/true"))
    monkeypatch.setattr(snapshot.shutil, "which", lambda name: "/usr/bin/true")
    monkeypatch.setattr(snapshot, "tool_major", lambda path: 12)
    with pytest.raises(snapshot.PgToolMissing, match="pg_dump 12 is older than the PostgreSQL server"):
        snapshot.find_pg_tool("pg_dump", 15)


def test_migrate_postgres_without_the_master_key_keeps_a_private_dump(pg_url, home, target):
    from conftest import Cli
    from tradeguard.backup.snapshot import find_pg_tool
    from tradeguard.storage import migrations, use_database

    with open_engine(pg_url, home) as engine:
        fill(engine, accounts=1)
        engine.set_profile("production")
        with use_database(engine.db):
            migrations.downgrade(engine.db, migrations.head() - 1)
    result = Cli(home, pg_url).json("db", "migrate", env=env(target, key=None))
    dump = Path(result["backup"]["where"])
    assert result["backup"]["kind"] == "snapshot" and dump.parent == home / "pre-migration"
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    import subprocess

    listing = subprocess.run([find_pg_tool("pg_restore", 15), "--list", str(dump)], capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE DATA public account" in listing.stdout


def test_development_auto_migration_backs_up_first(home, caplog):
    from tradeguard.storage import migrations, use_database

    url = f"sqlite:///{home / 'tradeguard.db'}"
    with open_engine(url, home) as engine:
        fill(engine, accounts=1)
        assert engine.profile == "development"
        with use_database(engine.db):
            migrations.downgrade(engine.db, migrations.head() - 1)
    with caplog.at_level("WARNING", logger="tradeguard.backup"), open_engine(url, home, key=None) as engine:
        with use_database(engine.db):
            assert migrations.current(engine.db) == migrations.head()
    snaps = list(home.glob("tradeguard.db.pre-migration-v*"))
    assert len(snaps) == 1 and str(snaps[0]) in caplog.text


def test_in_place_restore_refuses_while_a_runner_holds_a_lease(home, target, sqlite_cli):
    from tradeguard.storage import use_database
    from tradeguard.storage.models import Account, RunnerLease

    url = f"sqlite:///{home / 'tradeguard.db'}"
    with open_engine(url, home) as engine:
        fill(engine, accounts=1)
        made = engine.backups.create(target)
        with use_database(engine.db):
            RunnerLease.create(account=Account.get(Account.name == "acct0"), owner="host:123")
    before = rows_of(url)
    result = sqlite_cli("backup", "restore", made["id"], "--in-place", "--yes", env=env(target))
    assert result.exit_code == 2 and "active on account(s) acct0" in result.output
    assert rows_of(url)["account"] == before["account"]
