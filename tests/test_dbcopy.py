"""`tradeguard db copy`: a whole installation to another backend, in one snapshot, byte for byte."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ops_helpers import WEI, SNAPSHOTS, new_master_key, open_engine, populate, raw_rows, table_counts
from tradeguard import Engine
from tradeguard.dbcopy import MARKER, PAUSE_ENV, IncompleteCopy, table_digest, verify_copy
from tradeguard.storage import connect, use_database
from tradeguard.storage.models import ALL_MODELS, Account, AuditCheckpoint, AuditLog, Order, Setting, Trade, VaultKey


@pytest.fixture
def other_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on the *other* backend (SQLite source -> PostgreSQL target and back)."""
    if db_url.startswith("sqlite"):
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'copy' / 'target.db'}"


@pytest.fixture
def master_key() -> str:
    return new_master_key()


@pytest.fixture
def populated(db_url: str, home: Path, master_key: str) -> dict[str, Any]:
    with open_engine(db_url, home, master_key) as engine:
        ids = populate(engine)
    return ids


@pytest.fixture
def small(db_url: str, home: Path) -> None:
    """A small installation (for tests about the target, not the data)."""
    with open_engine(db_url, home) as engine:
        engine.accounts.add("main", "paper")
        engine.accounts.add("spare", "paper")


def digests(url: str) -> dict[str, tuple[int, str]]:
    db = connect(url)
    try:
        return {m._meta.table_name: table_digest(db, m) for m in ALL_MODELS}
    finally:
        db.close()


def test_copy_to_the_other_backend_preserves_everything(cli, db_url, other_url, home, master_key, populated):
    before = digests(db_url)
    out = cli.json("db", "copy", "--to", other_url)
    assert out["target_backend"] == ("postgres" if db_url.startswith("sqlite") else "sqlite")
    assert out["tables"]["balance_snapshot"] == SNAPSHOTS and out["rows"] == sum(out["tables"].values())
    assert digests(db_url) == before, "the source changed"

    source, target = connect(db_url), connect(other_url)
    try:
        # every table, row by row, compared on Python values (Decimals exact, timestamps to the microsecond)
        assert all(equal for _, _, equal in verify_copy(source, target).values()), verify_copy(source, target)
        # the audit log, its seals and checkpoints and the vault's wrapped keys: the same bytes
        assert raw_rows(source, AuditLog) == raw_rows(target, AuditLog)  # all text columns: same bytes
        for model in (AuditCheckpoint, VaultKey, Setting):
            assert values(source, model) == values(target, model)
        with use_database(target):
            trade = Trade.get(Trade.exchange_trade_id == "chain-1")
            assert trade.quantity == WEI and trade.gas_price == WEI
            child = Order.get(Order.id == populated["child"])
            assert child.parent_id == populated["parent"]
            assert not Setting.select().where(Setting.key == MARKER).exists()
        with use_database(source):
            source_ts = [a.created_at for a in Account.select().order_by(Account.id)]
        with use_database(target):
            assert [a.created_at for a in Account.select().order_by(Account.id)] == source_ts
    finally:
        source.close()
        target.close()

    # the copy is a working installation: same master key, sealed chain verifies, trading continues
    with open_engine(other_url, home, master_key) as copy:
        report = copy.audit.verify(record=False)
        assert report.ok and report.keyed and report.entries == out["audit_head"]["seq"], report.message
        assert copy.vault.secrets_for("main", purpose="test")["api_secret"] == "s3cr3t-value"
        order = copy.place_order("main", "BTC/USDT", "buy", "0.002")
        assert order.status.value == "FILLED"
        with use_database(copy.db):
            assert order.id == Order.select().count()  # ids continue after the copied ones (sequences fixed)
        copy.accounts.add("after-copy", "paper")
        assert copy.audit.verify(record=False).ok


def test_round_trip_sqlite_postgres_sqlite_is_byte_identical(tmp_path, home, pg_url, master_key):
    first, back = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with open_engine(first, home, master_key) as engine:
        populate(engine)
    from tradeguard.dbcopy import copy_installation

    for source_url, target_url in ((first, pg_url), (pg_url, back)):
        source = connect(source_url)
        try:
            copy_installation(source, source_url, target_url)
        finally:
            source.close()
    a, b = connect(first), connect(back)
    try:
        for model in ALL_MODELS:
            assert raw_rows(a, model) == raw_rows(b, model), model._meta.table_name
    finally:
        a.close()
        b.close()


def values(db: Any, model: Any) -> list[tuple]:
    """A table's rows as Python values (aware datetimes, Decimals), in primary-key order."""
    with use_database(db):
        return list(model.select().order_by(model._meta.primary_key).tuples())


def test_non_empty_target_needs_force_and_a_confirmation(cli, db_url, other_url, home, small):
    cli.json("db", "copy", "--to", other_url)
    with open_engine(db_url, home) as engine:
        engine.accounts.add("later", "paper")
    target_before = digests(other_url)

    refused = cli("db", "copy", "--to", other_url)
    assert refused.exit_code == 2 and "not empty" in refused.stderr and "--force" in refused.stderr
    declined = cli("db", "copy", "--to", other_url, "--force", input="n\n")
    assert declined.exit_code == 2 and "not confirmed" in declined.stderr
    assert digests(other_url) == target_before

    accepted = cli("db", "copy", "--to", other_url, "--force", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "copied" in accepted.stdout
    with open_engine(other_url, home) as copy:
        assert "later" in [a.name for a in copy.accounts.list()]


def test_an_initialised_but_empty_target_counts_as_empty(cli, db_url, other_url, home, small):
    with open_engine(db_url, home) as engine:
        engine.set_profile("test")
    with open_engine(other_url, home) as target:
        target.set_profile("production")  # what `tradeguard --db URL init --profile production` leaves
    cli.json("db", "copy", "--to", other_url)
    with open_engine(other_url, home) as copy:
        assert copy.profile == "test"  # the source's settings came along


@pytest.mark.parametrize("case", ["same", "foreign", "unreachable", "malformed"])
def test_bad_targets_are_refused_and_change_nothing(cli, db_url, tmp_path, home, small, case):
    before = digests(db_url)
    if case == "same":
        url, code, text = db_url, 2, "the target is the source"
    elif case == "foreign":
        url = f"sqlite:///{tmp_path / 'foreign.db'}"
        import sqlite3

        conn = sqlite3.connect(tmp_path / "foreign.db")
        conn.execute("CREATE TABLE customers (id INTEGER)")
        conn.commit()
        conn.close()
        code, text = 2, "not tradeguard's (customers)"
    elif case == "unreachable":
        url, code, text = "postgresql://postgres@127.0.0.1:1/nowhere", 1, "cannot reach the database"
    else:
        url, code, text = "postgresql://", 2, "malformed database URL"
    result = cli("db", "copy", "--to", url)
    assert result.exit_code == code, result.output
    assert text in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert digests(db_url) == before


def test_copy_is_one_snapshot_while_bots_keep_writing(db_url, other_url, home, master_key, populated, monkeypatch):
    """Writes that land during the copy are either wholly in it or not at all: the copy's audit
    chain verifies and ends where the source's did when the copy began."""
    import tradeguard.dbcopy as dbcopy

    with open_engine(db_url, home, master_key) as engine:
        head_at_start = engine.audit.head()
        writer = open_engine(db_url, home, master_key)
        done: list[str] = []

        def write_during_copy(table: str) -> None:
            if table == "account" and not done:
                # another thread, its own connection: a bot placing an order and changing an account
                def bot() -> None:
                    writer.place_order("main", "BTC/USDT", "sell", "0.001")
                    writer.accounts.add("during-copy", "paper")

                thread = threading.Thread(target=bot)
                thread.start()
                thread.join(30)
                done.append("wrote")

        monkeypatch.setattr(dbcopy, "_pause_for_tests", write_during_copy)
        try:
            dbcopy.copy_installation(engine.db, db_url, other_url)
        finally:
            writer.close()
        assert done == ["wrote"]
        assert engine.audit.head().seq > head_at_start.seq  # the writes did happen on the source
    with open_engine(other_url, home, master_key) as copy:
        assert copy.audit.head() == head_at_start
        assert copy.audit.verify(record=False).ok
        assert "during-copy" not in [a.name for a in copy.accounts.list()]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["balance_snapshot"])  # after the first of several batches
def test_a_killed_copy_leaves_the_target_marked_incomplete(cli, db_url, other_url, home, populated, kill_at):
    """A real process killed midway: no data is left in the target, Engine.open and doctor refuse
    it with a clear message, and running the copy again (no --force) completes it."""
    env = {**os.environ, **cli.env, PAUSE_ENV: kill_at}
    proc = subprocess.Popen([sys.executable, "-m", "tradeguard.cli", "db", "copy", "--to", other_url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "paused after the first batch" in line:
                break
        else:
            pytest.fail(f"the copy never reached {kill_at}: exit {proc.wait()}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()

    target = connect(other_url)
    counts = table_counts(target)
    target.close()
    assert counts["setting"] == 1  # the marker only
    assert all(count == 0 for table, count in counts.items() if table not in ("setting", "schema_version"))
    with pytest.raises(IncompleteCopy, match="incomplete copy"):
        Engine.open(other_url, home=home, load_entrypoints=False)
    listed = cli("account", "list", env={"TRADEGUARD_DATABASE_URL": other_url})
    assert listed.exit_code == 1 and "incomplete copy" in listed.stderr
    doctor = cli("doctor", "--json", env={"TRADEGUARD_DATABASE_URL": other_url})
    assert doctor.exit_code == 1
    import json

    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["database"]["status"] == "fail" and "db copy" in checks["database"]["fix"]

    again = cli.json("db", "copy", "--to", other_url)
    assert again["replaced"] is False
    with open_engine(other_url, home) as copy:
        assert len(copy.accounts.list()) == 2


def test_a_row_the_target_refuses_rolls_the_copy_back(cli, db_url, other_url, home, small, monkeypatch):
    """A failure inside the copy transaction: one clear line, exit 1, the target marked incomplete, no rows."""
    import tradeguard.dbcopy as dbcopy

    real = dbcopy._db_values

    def corrupt(fields, values):
        row = list(real(fields, values))
        if fields[0].model is Account:
            row[[f.name for f in fields].index("name")] = None  # NOT NULL
        return tuple(row)

    monkeypatch.setattr(dbcopy, "_db_values", corrupt)
    result = cli("db", "copy", "--to", other_url)
    assert result.exit_code == 1 and "copying table account failed" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert "Traceback" not in result.stderr
    target = connect(other_url)
    try:
        counts = table_counts(target)
        assert counts["account"] == 0 and counts["schema_version"] == 2
    finally:
        target.close()
    with pytest.raises(IncompleteCopy):
        Engine.open(other_url, home=home, load_entrypoints=False)


def test_a_password_in_argv_is_warned_about_and_never_printed(cli, db_url, tmp_path, small):
    url = "postgresql://someone:hunter2secret@127.0.0.1:1/nowhere"
    result = cli("db", "copy", "--to", url)
    assert result.exit_code == 1 and "process list" in result.stderr
    assert "hunter2secret" not in result.output
    from_env = cli("db", "copy", env={"TRADEGUARD_COPY_TO": url})
    assert from_env.exit_code == 1 and "process list" not in from_env.stderr and "hunter2secret" not in from_env.output


def test_a_silently_altered_value_is_caught_before_commit(cli, db_url, other_url, home, small, monkeypatch):
    """The read-back digest: a target that stores something else than it was given fails the copy (exit 4)."""
    import tradeguard.dbcopy as dbcopy

    real = dbcopy._db_values

    def alter(fields, values):
        row = list(real(fields, values))
        names = [f.name for f in fields]
        if fields[0].model is Account:
            row[names.index("max_daily_loss")] = "101" if isinstance(row[names.index("max_daily_loss")], str) else 101
        return tuple(row)

    monkeypatch.setattr(dbcopy, "_db_values", alter)
    result = cli("db", "copy", "--to", other_url)
    assert result.exit_code == 4 and "the copy of table account differs from the source" in result.stderr
    target = connect(other_url)
    try:
        assert table_counts(target)["account"] == 0
    finally:
        target.close()
