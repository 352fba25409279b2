"""Benchmark: export and report over a large ``trade`` table (SQLite file on disk).

Inserts N fills on one account, then measures

* baseline -- the raw ``sqlite3`` driver: one cursor over the same rows and
  columns, each row written with ``csv.writer`` to /dev/null (no Decimal or
  time conversion, no paging): the floor the disk and the driver set;
* export   -- ``engine.reports.export("trades", …, format="csv")`` (keyset pages,
  exact Decimals, UTC ISO timestamps, the account's name);
* export jsonl -- the same as JSON Lines;
* report   -- ``engine.reports.report(account)`` (replays every fill: equity
  curve, daily returns, drawdown, Sharpe/Sortino);
* replay   -- ``engine.reports.replay(account)``;

and prints rows/s for each, the ratio to the baseline, and the peak memory of
the export (tracemalloc) so the constant-memory claim can be seen at scale.

    python bench/export_report.py                 # 200,000 fills
    python bench/export_report.py --rows 1000000
"""

from __future__ import annotations

import argparse
import csv
import os
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path


def fill_table(engine, account_id: int, rows: int) -> None:
    """*rows* alternating buy/sell fills of 0.001 BTC around 50,000, one a minute."""
    from tradeguard.storage import use_database
    from tradeguard.storage.models import Trade

    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    fields = [Trade.account, Trade.exchange_trade_id, Trade.exchange_timestamp, Trade.symbol, Trade.side, Trade.price,
              Trade.quantity, Trade.fee, Trade.fee_currency, Trade.realized_pnl, Trade.taker, Trade.imported,
              Trade.created_at]
    with use_database(engine.db):
        for start in range(0, rows, 5000):
            batch = []
            for i in range(start, min(rows, start + 5000)):
                buy = i % 2 == 0
                price = Decimal(50000 + (i % 97) * 3) + Decimal("0.25")
                realized = Decimal(0) if buy else (price - (Decimal(50000 + ((i - 1) % 97) * 3) + Decimal("0.25"))) * Decimal("0.001")
                batch.append((account_id, f"b-{i}", base + timedelta(minutes=i), "BTC/USDT", "buy" if buy else "sell",
                              price, Decimal("0.001"), Decimal("0.05"), "USDT", realized, True, False, base))
            with engine.db.atomic():
                Trade.insert_many(batch, fields=fields).execute()


def timed(label: str, rows: int, function, baseline: float | None = None) -> float:
    started = time.perf_counter()
    function()
    seconds = time.perf_counter() - started
    ratio = f", {seconds / baseline:.2f}x the baseline" if baseline else ""
    print(f"{label:<14} {rows / seconds:>12,.0f} rows/s  ({seconds:.2f} s{ratio})")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    from tradeguard import Engine

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "bench.db"
        with Engine.open(f"sqlite:///{path}", home=work, load_entrypoints=False) as engine:
            account = engine.accounts.add("bench", "paper", initial_capital="100000")
            started = time.perf_counter()
            fill_table(engine, account.id, args.rows)
            print(f"inserted {args.rows:,} fills in {time.perf_counter() - started:.1f} s")

            def raw() -> None:
                conn = sqlite3.connect(path)
                with open(os.devnull, "w", newline="") as sink:
                    writer = csv.writer(sink)
                    for row in conn.execute("SELECT * FROM trade ORDER BY exchange_timestamp, id"):
                        writer.writerow(row)
                conn.close()

            def export(fmt: str):
                def run() -> None:
                    with open(os.devnull, "w") as sink:
                        engine.reports.export("trades", sink, format=fmt)
                return run

            baseline = timed("baseline", args.rows, raw)
            timed("export csv", args.rows, export("csv"), baseline)
            timed("export jsonl", args.rows, export("jsonl"), baseline)
            timed("report", args.rows, lambda: engine.reports.report("bench"), baseline)
            timed("replay", args.rows, lambda: engine.reports.replay("bench"), baseline)
            tracemalloc.start()
            export("csv")()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"export peak memory (tracemalloc): {peak / 1e6:.1f} MB for {args.rows:,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
