"""The audit chain: encoding identical on both backends, verify, seals,
checkpoints, tampering with raw SQL, concurrency, export and tail."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tradeguard import VaultLocked, audit
from tradeguard.audit.chain import GENESIS, entry_bytes, entry_hash
from tradeguard.storage import use_database

from vault_helpers import add_accounts, open_engine, rewrite_from, rows, sql, write_row

ROOT = Path(__file__).resolve().parent.parent

# -- encoding ---------------------------------------------------------------------------------

ROUND_TRIP_PAYLOAD = {
    "amount": Decimal("0.1"),
    "wei": Decimal("123456789012345678901234567"),
    "at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
    "note": "café € 😀",
    "neg": Decimal("-1E-8"),
    "list": [1, "a", None, True],
}
ROUND_TRIP_TEXT = ('{"amount":"0.1","at":"2026-01-02T03:04:05.000006Z","list":[1,"a",null,true],'
                   '"neg":"-0.00000001","note":"café € 😀","wei":"123456789012345678901234567"}')
#: sha256 of the canonical encoding of that entry as seq 1: the same on every backend.
ROUND_TRIP_HASH = "6235fd1413989b2fff95df0695bad1f8abeefe8522cb3987227c91e1a060d851"


def test_encoding_is_byte_identical_after_a_round_trip(engine, monkeypatch):
    """Decimals, datetimes and non-ASCII text give the same bytes on SQLite and
    PostgreSQL, before and after the database (a fixed, known hash)."""
    fixed = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    monkeypatch.setattr("tradeguard.audit.chain.utcnow", lambda: fixed)
    with use_database(engine.db):
        written = audit.append("tester", "test.roundtrip", "subject:é", ROUND_TRIP_PAYLOAD)
    assert written.hash == ROUND_TRIP_HASH
    (row,) = rows(engine)
    assert row["ts"] == "2026-01-02T03:04:05.000006Z"
    assert row["payload"] == ROUND_TRIP_TEXT
    rebuilt = entry_bytes(row["seq"], row["ts"], row["actor"], row["action"], row["subject"], row["payload"], row["prev_hash"])
    assert entry_hash(1, "2026-01-02T03:04:05.000006Z", "tester", "test.roundtrip", "subject:é", ROUND_TRIP_TEXT,
                      GENESIS) == ROUND_TRIP_HASH
    import hashlib

    assert hashlib.sha256(rebuilt).hexdigest() == row["hash"] == ROUND_TRIP_HASH
    assert engine.audit.verify(record=False).ok


def test_encoding_is_length_prefixed_so_field_boundaries_matter():
    a = entry_bytes(1, "t", "ab", "c", "s", "{}", GENESIS)
    b = entry_bytes(1, "t", "a", "bc", "s", "{}", GENESIS)
    assert a != b and a[:4] == (1).to_bytes(4, "big")


# -- verify -------------------------------------------------------------------------------------


def test_account_changes_are_chained_and_verify(engine):
    add_accounts(engine, 2)
    engine.accounts.set("acct0", max_daily_loss="50")
    report = engine.audit.verify(record=False)
    assert report.ok and report.entries == 3
    assert report.message.startswith(f"ok: 3 entries, head {report.head}")
    assert "seals not checked" in report.message
    entries = rows(engine)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev_hash"] == GENESIS and entries[1]["prev_hash"] == entries[0]["hash"]
    payload = json.loads(entries[2]["payload"])
    assert payload == {"old": {"max_daily_loss": "100"}, "new": {"max_daily_loss": "50"}}


def test_unlocked_entries_are_sealed_and_verify_reports_reach(db_url, home):
    with open_engine(db_url, home) as eng:
        add_accounts(eng, 2)
        report = eng.audit.verify(record=False)
        assert report.ok and report.keyed
        assert report.seals_checked == report.entries == 3  # vault.init + 2 account.add
        assert report.sealed_through == 3
        assert "sealed through entry 3" in report.message
        assert all(e["seal"] and e["key_id"].startswith("audit-") for e in rows(eng))


def test_locked_appends_are_chained_only_and_the_next_unlock_checkpoints(db_url, home):
    with open_engine(db_url, home) as eng:
        add_accounts(eng, 1)
    with open_engine(db_url, home, master_key=None) as eng:
        eng.accounts.add("bot", "paper")  # a bot without the master key
        assert rows(eng)[-1]["seal"] is None
        assert eng.audit.checkpoints() == []
        with pytest.raises(VaultLocked):
            eng.audit.checkpoint("backup")
        head = eng.audit.head()
    with open_engine(db_url, home) as eng:
        (cp,) = eng.audit.checkpoints()
        assert (cp["seq"], cp["head_hash"], cp["reason"]) == (head.seq, head.hash, "unlock")
        report = eng.audit.verify(record=False)
        assert report.ok and report.sealed_through == head.seq and report.checkpoints_checked == 1
        explicit = eng.audit.checkpoint("backup")
        assert (explicit.seq, explicit.head_hash) == (head.seq, head.hash)


def test_verify_from_a_sequence_number(engine):
    add_accounts(engine, 5)
    report = engine.audit.verify(from_seq=3, record=False)
    assert report.ok and report.first_seq == 3 and report.entries == 3
    sql(engine, "UPDATE audit_log SET subject = 'x' WHERE seq = 2")
    assert engine.audit.verify(from_seq=3, record=False).ok  # the range does not include entry 2 ...
    assert not engine.audit.verify(from_seq=2, record=False).ok  # ... this one does


def test_verify_and_export_are_themselves_audited(engine):
    add_accounts(engine, 1)
    engine.audit.verify()
    list(engine.audit.export())
    actions = [e["action"] for e in rows(engine)]
    assert actions[-2:] == ["audit.verify", "audit.export"]


# -- tampering with raw SQL ------------------------------------------------------------------


def _broken(engine, **kwargs):
    report = engine.audit.verify(record=False, **kwargs)
    assert not report.ok
    return report


def test_tamper_change_a_displayed_column(db_url, home, sqlite_cli):
    with open_engine(db_url, home, master_key=None) as eng:
        add_accounts(eng, 5)
        shown = eng.audit.tail(10)
        assert shown[2]["actor"] == "cli"
        sql(eng, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
        assert eng.audit.tail(10)[2]["actor"] == "mallory"  # what `audit tail` shows changed ...
        report = _broken(eng)  # ... and verify catches it
        assert (report.bad_seq, report.problem) == (3, "changed")
        assert report.entries == 2


@pytest.mark.parametrize("column,value", [("ts", "2020-01-01T00:00:00.000000Z"), ("action", "account.nothing"),
                                          ("payload", '{"outcome":"deleted"}'), ("subject", "account:other")])
def test_tamper_any_hashed_column(sqlite_engine, column, value):
    add_accounts(sqlite_engine, 3)
    sql(sqlite_engine, f"UPDATE audit_log SET {column} = ? WHERE seq = 2", (value,))
    report = _broken(sqlite_engine)
    assert (report.bad_seq, report.problem) == (2, "changed")


def test_tamper_delete_a_row(engine):
    add_accounts(engine, 6)
    sql(engine, "DELETE FROM audit_log WHERE seq = 4")
    report = _broken(engine)
    assert (report.bad_seq, report.problem) == (4, "missing")
    assert "entry 4 missing" in report.message


@pytest.mark.parametrize("a,b", [(3, 4), (2, 5)])
def test_tamper_swap_two_rows(engine, a, b):
    add_accounts(engine, 6)
    entries = {e["seq"]: e for e in rows(engine)}
    write_row(engine, a, entries[b])
    write_row(engine, b, entries[a])
    report = _broken(engine)
    assert (report.bad_seq, report.problem) == (a, "reordered")
    assert f"recorded as {b}" in report.message


def test_tamper_truncate_the_tail_is_caught_by_expect_head(engine):
    add_accounts(engine, 6)
    head = engine.audit.head()
    assert engine.audit.verify(expect_head=head.hash, record=False).ok
    sql(engine, "DELETE FROM audit_log WHERE seq > 4")
    assert engine.audit.verify(record=False).ok  # the remaining chain is intact ...
    report = _broken(engine, expect_head=head.hash)  # ... but the recorded head is gone
    assert report.problem == "unexpected_head" and report.bad_seq == 5
    assert "truncated" in report.message


def test_tamper_truncate_below_a_sealed_checkpoint(db_url, home):
    with open_engine(db_url, home) as eng:
        add_accounts(eng, 5)
        cp = eng.audit.checkpoint("backup")
        sql(eng, "DELETE FROM audit_log WHERE seq > 3")
        report = _broken(eng)
        assert report.problem == "truncated" and f"reached {cp.seq}" in report.message


def test_tamper_consistent_rewrite_is_caught_only_by_the_seal(db_url, home):
    with open_engine(db_url, home) as eng:
        add_accounts(eng, 6)
    with open_engine(db_url, home, master_key=None) as eng:
        rewrite_from(eng, 4, payload='{"account":{"name":"evil"}}')
        chain_only = eng.audit.verify(record=False)
        assert chain_only.ok  # recomputed hashes fool a chain-only check
    with open_engine(db_url, home) as eng:  # the key holder's check (no checkpoint seals a broken chain)
        report = _broken(eng)
        assert (report.bad_seq, report.problem) == (4, "bad_seal")
        assert report.sealed_through == 3
        assert eng.audit.checkpoints() == []


def test_a_rewritten_prefix_shows_as_a_broken_link(sqlite_engine):
    add_accounts(sqlite_engine, 5)
    entries = {e["seq"]: e for e in rows(sqlite_engine)}
    changed = dict(entries[2], subject="account:x")
    changed["hash"] = entry_hash(2, changed["ts"], changed["actor"], changed["action"], changed["subject"],
                                 changed["payload"], changed["prev_hash"])
    write_row(sqlite_engine, 2, changed)
    report = _broken(sqlite_engine)
    assert (report.bad_seq, report.problem) == (3, "broken_link")


def test_cli_verify_exit_4_names_the_entry(cli):
    assert cli("account", "add", "a", "--exchange", "paper").exit_code == 0
    assert cli("account", "add", "b", "--exchange", "paper").exit_code == 0
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: 2 entries, head ")
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as eng:
        sql(eng, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    bad = cli("audit", "verify")
    assert bad.exit_code == 4
    assert "entry 2" in bad.stderr and "changed" in bad.stderr
    data = json.loads(cli("audit", "verify", "--json").stdout)
    assert data["ok"] is False and data["bad_seq"] == 2
    assert cli("audit", "verify", "--expect-head", "nothex").exit_code == 2


def test_cli_expect_head_and_from(sqlite_cli):
    for name in "abc":
        sqlite_cli("account", "add", name, "--exchange", "paper")
    head = sqlite_cli.json("audit", "head")
    assert head["seq"] == 3
    assert sqlite_cli("audit", "verify", "--expect-head", head["hash"]).exit_code == 0
    assert sqlite_cli("audit", "verify", "--expect-head", "ab" * 32).exit_code == 4
    partial = sqlite_cli.json("audit", "verify", "--from", "2")
    assert partial["first_seq"] == 2
    beyond = sqlite_cli("audit", "verify", "--from", "99")
    assert beyond.exit_code == 2 and "the chain ends at entry" in beyond.stderr


# -- concurrency ------------------------------------------------------------------------------


def test_threads_append_one_unbroken_chain(engine):
    add_accounts(engine, 4)
    errors = []

    def work(index: int) -> None:
        try:
            for step in range(15):
                engine.accounts.set(f"acct{index}", max_daily_loss=str(100 + step))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = engine.audit.verify(record=False)
    assert report.ok and report.entries == 4 + 4 * 15


_WORKER = """
import sys
from tradeguard import Engine
url, home, name = sys.argv[1:4]
with Engine.open(url, home=home, load_entrypoints=False) as eng:
    for step in range(20):
        eng.accounts.set(name, max_daily_loss=str(100 + step))
"""


def test_processes_append_one_unbroken_chain(engine, home):
    add_accounts(engine, 3)
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, engine.url, str(home), f"acct{i}"],
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    report = engine.audit.verify(record=False)
    assert report.ok and report.entries == 3 + 3 * 20
    assert [e["seq"] for e in rows(engine)] == list(range(1, 64))


# -- export and tail ---------------------------------------------------------------------------


def _doc_verifier(tmp_path: Path) -> Path:
    text = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    section = text.split("## A standalone verifier", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 26
    path = tmp_path / "verifier.py"
    path.write_text(code, encoding="utf-8")
    return path


def test_export_is_verified_by_the_documented_standalone_verifier(cli, tmp_path):
    for name in ("a", "b"):
        cli("account", "add", name, "--exchange", "paper")
    cli("account", "set", "a", "--max-daily-loss", "12.50")
    out = tmp_path / "audit.jsonl"
    result = cli("audit", "export", "--format", "jsonl", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    verifier = _doc_verifier(tmp_path)
    run = subprocess.run([sys.executable, str(verifier), str(out)], capture_output=True, text=True, check=True)
    head = cli.json("audit", "verify")["head"]
    # the export ran before this verify: its head is entry 3
    assert run.stdout.strip().startswith("ok: 3 entries, head ")
    lines = out.read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[1])
    entry["subject"] = "account:z"
    lines[1] = json.dumps(entry)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = subprocess.run([sys.executable, str(verifier), str(out)], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "entry 2: content changed"
    assert head


def test_export_filters(sqlite_cli):
    for name in ("a", "b"):
        sqlite_cli("account", "add", name, "--exchange", "paper")
    sqlite_cli("account", "set", "a", "--max-daily-loss", "5")
    lines = sqlite_cli("audit", "export", "--action", "account.set").stdout.splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["account.set"]
    prefix = sqlite_cli("audit", "export", "--action", "account.*").stdout.splitlines()
    assert len(prefix) == 3
    assert sqlite_cli("audit", "export", "--since", "2999-01-01").stdout == ""
    assert len(sqlite_cli("audit", "export", "--since", "2000-01-01").stdout.splitlines()) >= 3
    assert sqlite_cli("audit", "export", "--since", "yesterday").exit_code == 2
    assert sqlite_cli("audit", "export", "--format", "csv").exit_code == 2


def test_tail_and_follow(sqlite_cli, home):
    for name in ("a", "b", "c"):
        sqlite_cli("account", "add", name, "--exchange", "paper")
    text = sqlite_cli("audit", "tail", "-n", "2").stdout.splitlines()
    assert len(text) == 2 and "account:b" in text[0] and "account:c" in text[1]
    lines = sqlite_cli("audit", "tail", "-n", "5", "--json").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert sqlite_cli("audit", "tail", "-n", "0").exit_code == 2

    from tradeguard import Engine

    def later() -> None:
        import time

        time.sleep(0.3)
        with Engine.open(home=home, load_entrypoints=False) as eng:
            eng.accounts.add("d", "paper")

    thread = threading.Thread(target=later)
    thread.start()
    followed = sqlite_cli("audit", "tail", "-n", "1", "--follow", "--interval", "0.1", "--max-polls", "15", "--json")
    thread.join()
    seqs = [json.loads(line)["seq"] for line in followed.stdout.splitlines()]
    assert seqs == [3, 4]
