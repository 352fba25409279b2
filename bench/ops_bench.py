"""Operations benchmarks: doctor's incremental audit check and `db copy` throughput.

    .venv/bin/python bench/ops_bench.py [--entries 100000] [--snapshots 100000] [--postgres URL]

1. doctor's audit check from the last sealed checkpoint vs. the full chain
   (baseline: the full walk, measured in the same run on the same log);
2. `db copy` SQLite -> SQLite (and -> PostgreSQL with --postgres, an EMPTY
   database) vs. SQLite's own online backup API copying the same file
   (baseline: the fastest possible byte-level copy, which cannot change backend).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from tradeguard import Engine
from tradeguard.audit.chain import append
from tradeguard.clock import utcnow
from tradeguard.dbcopy import copy_installation
from tradeguard.doctor import check_audit
from tradeguard.storage import use_database
from tradeguard.storage.models import Account, BalanceSnapshot


def build(url: str, home: Path, key: str, entries: int, snapshots: int, tail: int) -> None:
    with Engine.open(url, home=home, load_entrypoints=False, master_key=key) as engine:
        engine.accounts.add("main", "paper")
        with use_database(engine.db):
            account = Account.get(Account.name == "main")
            for start in range(0, entries - tail, 1000):
                with engine.db.atomic():
                    for i in range(start, min(start + 1000, entries - tail)):
                        append("bench", "bench.entry", "bench", {"i": i, "amount": "0.1"})
            engine.audit.checkpoint("bench")
            with engine.db.atomic():
                for i in range(tail):
                    append("bench", "bench.entry", "bench", {"i": i})
            now = utcnow()
            for start in range(0, snapshots, 5000):
                rows = [{"account": account.id, "asset": "USDT", "free": Decimal(f"{i}.25"), "used": Decimal(0),
                         "total": Decimal(f"{i}.25"), "source": "bench", "taken_at": now - timedelta(seconds=i)}
                        for i in range(start, min(start + 5000, snapshots))]
                with engine.db.atomic():
                    BalanceSnapshot.insert_many(rows).execute()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="audit entries")
    parser.add_argument("--tail", type=int, default=1_000, help="entries appended after the last checkpoint")
    parser.add_argument("--snapshots", type=int, default=100_000, help="balance snapshot rows")
    parser.add_argument("--postgres", metavar="URL", help="also copy to this EMPTY PostgreSQL database")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tg-ops-bench-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    home = work / "home"
    home.mkdir(mode=0o700)
    key = "base64:" + base64.b64encode(os.urandom(32)).decode()
    source_file = work / "source.db"
    source_url = f"sqlite:///{source_file}"
    build_s, _ = timed(lambda: build(source_url, home, key, args.entries, args.snapshots, args.tail))
    print(f"built {args.entries} audit entries + {args.snapshots} snapshots in {build_s:.1f}s", file=sys.stderr)

    with Engine.open(source_url, home=home, load_entrypoints=False, master_key=key) as engine:
        full_s, full = timed(lambda: check_audit(engine, full=True))
        inc_s, inc = timed(lambda: check_audit(engine, full=False))
        assert full.status == inc.status == "ok", (full, inc)
        print(f"doctor audit check, full chain:        {args.entries} entries  {full_s * 1000:9.1f} ms")
        print(f"doctor audit check, from checkpoint:   {inc.details['entries']} entries  {inc_s * 1000:9.1f} ms"
              f"  ratio {inc_s / full_s:.4f} of the full walk ({full_s / inc_s:.0f}x faster)")

        backup_file = work / "backup.db"
        src = sqlite3.connect(source_file)
        dst = sqlite3.connect(backup_file)
        base_s, _ = timed(lambda: src.backup(dst))
        src.close()
        dst.close()
        rows = args.entries + args.snapshots
        print(f"baseline: sqlite3 online backup API    {rows} rows  {base_s:7.2f} s")
        targets = [("sqlite", f"sqlite:///{work / 'copy.db'}")]
        if args.postgres:
            targets.append(("postgres", args.postgres))
        for name, target in targets:
            copy_s, result = timed(lambda: copy_installation(engine.db, source_url, target))
            copied = sum(result.tables.values())
            print(f"db copy sqlite -> {name:<8}             {copied} rows  {copy_s:7.2f} s  "
                  f"{copied / copy_s:,.0f} rows/s  ratio {copy_s / base_s:.1f}x the backup API "
                  f"(includes the read-back digest check)")


if __name__ == "__main__":
    main()
