"""`tradeguard export`: exact Decimals, UTC timestamps, csv and jsonl, filters, constant memory."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest

from report_helpers import D, at, emergency, fill, rejection, round_trip
from tradeguard.storage import use_database
from tradeguard.storage.models import SyncLog

WEI = "123456789012345678.123456789012345678"


def _seed(engine):
    account = round_trip(engine)
    other = engine.accounts.add("other", "paper")
    exact = fill(engine, other, datetime(2026, 1, 5, 10, 0, 0, 6, tzinfo=timezone.utc), "buy", WEI, "0.1",
                 fee="0.000000000000000001", symbol="ETH/USDT")
    rejection(engine, account, at(2), "max_position_size")
    emergency(engine, account, at(3))
    with use_database(engine.db):
        SyncLog.create(account=account.id, sync_type="balance", source="venue", status="ok",
                       balance_after={"USDT": D("10.5")}, started_at=at(2))
    return account, other, exact


def _export(cli, *args):
    result = cli("export", *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_jsonl_keeps_decimals_exact_and_timestamps_utc(cli):
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as engine:
        _seed(engine)
    rows = [json.loads(line) for line in _export(cli, "trades", "--format", "jsonl").splitlines()]
    assert len(rows) == 5
    last = rows[-1]
    assert last["quantity"] == WEI and last["price"] == "0.1" and last["fee"] == "0.000000000000000001"
    assert last["exchange_timestamp"] == "2026-01-05T10:00:00.000006Z"
    assert last["account"] == "other" and last["side"] == "buy" and last["taker"] is True
    assert last["tx_hash"] is None
    assert [r["exchange_timestamp"][:10] for r in rows] == ["2026-01-01", "2026-01-01", "2026-01-02",
                                                           "2026-01-03", "2026-01-05"]
    assert rows[2]["realized_pnl"] == "15"


def test_csv_has_a_header_and_the_same_values(cli):
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as engine:
        _seed(engine)
    rows = list(csv.DictReader(io.StringIO(_export(cli, "trades", "--format", "csv"))))
    assert rows[-1]["quantity"] == WEI and rows[-1]["exchange_timestamp"] == "2026-01-05T10:00:00.000006Z"
    assert rows[-1]["tx_hash"] == "" and rows[-1]["taker"] == "true" and rows[-1]["account_id"]
    sync = list(csv.DictReader(io.StringIO(_export(cli, "sync-log"))))
    assert json.loads(sync[0]["balance_after"]) == {"USDT": "10.5"}


def test_every_table_exports(cli):
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as engine:
        _seed(engine)
    expected = {"orders": 5, "trades": 5, "positions": 1, "risk-log": 1, "sync-log": 1, "emergency-events": 1,
                "cash-flows": 1}
    for table, count in expected.items():
        lines = _export(cli, table, "--format", "jsonl").splitlines()
        assert len(lines) == count, table
        header = _export(cli, table).splitlines()[0]
        assert header.startswith("id,"), table


def test_filters_by_time_and_account(cli):
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as engine:
        _seed(engine)
    window = _export(cli, "trades", "--format", "jsonl", "--since", "2026-01-01T12:00Z", "--until", "2026-01-03")
    assert [json.loads(l)["price"] for l in window.splitlines()] == ["110", "120"]
    other = _export(cli, "trades", "--format", "jsonl", "--account", "other")
    assert [json.loads(l)["account"] for l in other.splitlines()] == ["other"]


def test_output_file_is_private_and_bad_input_leaves_no_file(sqlite_cli, tmp_path):
    from tradeguard import Engine

    with Engine.open(None, home=sqlite_cli.home, load_entrypoints=False) as engine:
        _seed(engine)
    out = tmp_path / "trades.csv"
    result = sqlite_cli("export", "trades", "-o", str(out))
    assert result.exit_code == 0 and "exported 5 trades rows" in result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert len(out.read_text().splitlines()) == 6
    for args, message in [
        (("export", "wallets"), "Invalid value"),
        (("export", "trades", "--format", "xml"), "Invalid value"),
        (("export", "trades", "--account", "ghost", "-o", str(tmp_path / "x.csv")), "no account named 'ghost'"),
        (("export", "trades", "--since", "soon", "-o", str(tmp_path / "y.csv")), "since: expected an ISO date"),
        (("export", "trades", "-o", str(tmp_path / "no-such-dir" / "z.csv")), "--output: cannot write"),
    ]:
        bad = sqlite_cli(*args)
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.output)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "y.csv").exists()


def _insert_trades(engine, account_id, n):
    """*n* fills written straight through the SQLite driver (fast; the values in the stored text forms)."""
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    created = base.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = [(account_id, f"bulk-{i}", (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "BTC/USDT",
             "buy", "100.5", "0.001", "0.0001", "0", 1, 0, created) for i in range(n)]
    with use_database(engine.db), engine.db.atomic():
        engine.db.connection().executemany(
            "INSERT INTO trade (account_id, exchange_trade_id, exchange_timestamp, symbol, side, price, quantity, fee,"
            " realized_pnl, taker, imported, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _peak_export(engine, fmt):
    with open(os.devnull, "w") as sink:
        tracemalloc.start()
        try:
            count = engine.reports.export("trades", sink, format=fmt)
            return count, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


@pytest.mark.slow
def test_export_memory_does_not_grow_with_the_table(tmp_path, home):
    from tradeguard import Engine

    peaks = {}
    for n in (5_000, 50_000):
        with Engine.open(f"sqlite:///{tmp_path / f'big{n}.db'}", home=home, load_entrypoints=False) as engine:
            account = engine.accounts.add("bulk", "paper")
            _insert_trades(engine, account.id, n)
            # JSON Lines builds a dict per row: the format most likely to hold on to rows
            for fmt in ("jsonl",):
                count, peak = _peak_export(engine, fmt)
                assert count == n
                peaks[(n, fmt)] = peak
    for fmt in ("jsonl",):
        small, large = peaks[(5_000, fmt)], peaks[(50_000, fmt)]
        # ten times the rows, (nearly) the same peak: a list of rows would take ~10x
        assert large < small * 1.5, (fmt, small, large)
