"""Benchmark: encrypted backup and verify of 100 MB and 1 GB SQLite databases.

For each size, builds a database of realistic ``trade`` rows (fills) (cached in the
work directory between runs), then measures, each in a fresh process:

* baseline -- the SQLite online backup API to a local file, alone;
* backup   -- ``engine.backups.create()``: snapshot, zstd, AES-256-GCM STREAM, file target;
* verify   -- ``engine.backups.verify()``: decrypt and authenticate every chunk,
  SHA-256, PRAGMA integrity_check and audit verify on the restored copy.

Prints MB/s and peak RSS (VmHWM: the whole process, Python and imports
included, and the growth over its resting RSS) for each, and the ratio of
backup time to the baseline measured in the same run.

    python bench/backup.py                       # 100 MB and 1 GB (about 3 minutes the first time)
    python bench/backup.py --sizes 100 --repeat 3
    python bench/backup.py --workdir /var/tmp/tg-bench --keep
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

KEY = "bench passphrase for backups"
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "AVAX/USDT"]


def rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


# -- building the database ---------------------------------------------------------------------


def build(path: Path, size_mb: int) -> None:
    """A tradeguard database grown with realistic fills until it is *size_mb* MB."""
    from tradeguard import Engine

    home = path.parent / "home"
    with Engine.open(f"sqlite:///{path}", home=home, master_key=KEY, load_entrypoints=False) as engine:
        for i in range(4):
            engine.accounts.add(f"bot{i}", "paper", initial_capital="10000")
    from tradeguard.storage.fields import decimal_collation

    conn = sqlite3.connect(path)
    conn.create_collation("DECIMAL", decimal_collation)
    conn.execute("PRAGMA synchronous=OFF")
    rng = random.Random(7)
    cols = ("account_id, exchange_trade_id, exchange_timestamp, symbol, side, price, quantity, fee, fee_currency, "
            "fee_rate, usd_value, realized_pnl, slippage, taker, imported, tx_hash, settlement_status, audit_data, created_at")
    sql = f"INSERT INTO trade ({cols}) VALUES ({', '.join('?' * 19)})"
    n = 0
    t = 1_767_225_600.0  # 2026-01-01
    while path.stat().st_size < size_mb << 20:
        rows = []
        for _ in range(20_000):
            n += 1
            t += rng.random() * 2
            price = rng.uniform(0.05, 70_000)
            qty = rng.uniform(0.0001, 50)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
            rows.append((
                1 + n % 4, f"{rng.randrange(10**11, 10**12)}-{n}", stamp, rng.choice(SYMBOLS), rng.choice(("buy", "sell")),
                f"{price:.8f}", f"{qty:.8f}", f"{price * qty * 0.001:.10f}", "USDT", "0.001", f"{price * qty:.6f}",
                f"{rng.uniform(-50, 50):.8f}", f"{rng.uniform(0, 0.002):.6f}", rng.random() < 0.7, False,
                "0x" + rng.getrandbits(256).to_bytes(32, "big").hex() if n % 10 == 0 else None,
                "SETTLED" if n % 10 == 0 else None,
                json.dumps({"order": n, "client_order_id": f"tg-{n:012d}", "strategy": "sma_cross", "latency_ms": rng.randrange(3, 400)}),
                stamp,
            ))
        conn.executemany(sql, rows)
        conn.commit()
    conn.close()


# -- measured operations (each in its own process) ---------------------------------------------


def child(op: str, path: Path, target: str) -> dict:
    if op == "baseline":
        dest = path.with_name("baseline-copy.db")
        dest.unlink(missing_ok=True)
        reset_peak()
        before = rss_kb("VmRSS:")
        t0 = time.perf_counter()
        src, dst = sqlite3.connect(path), sqlite3.connect(dest)
        src.backup(dst)
        dst.close()
        src.close()
        seconds = time.perf_counter() - t0
        dest.unlink()
        return {"seconds": seconds, "peak_kb": rss_kb("VmHWM:"), "growth_kb": rss_kb("VmHWM:") - before}
    from tradeguard import Engine

    with Engine.open(f"sqlite:///{path}", home=path.parent / "home", master_key=KEY, load_entrypoints=False) as engine:
        if op == "backup":
            reset_peak()
            before = rss_kb("VmRSS:")
            t0 = time.perf_counter()
            made = engine.backups.create(target)
            seconds = time.perf_counter() - t0
            return {"seconds": seconds, "peak_kb": rss_kb("VmHWM:"), "growth_kb": rss_kb("VmHWM:") - before,
                    "id": made["id"], "stored": made["size"], "snapshot": made["snapshot_size"]}
        backup_id = sys.argv[sys.argv.index("--id") + 1]
        reset_peak()
        before = rss_kb("VmRSS:")
        t0 = time.perf_counter()
        engine.backups.verify(backup_id, target)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "peak_kb": rss_kb("VmHWM:"), "growth_kb": rss_kb("VmHWM:") - before}


def run_child(op: str, path: Path, target: str, extra: list[str] = ()) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", op, "--db-file", str(path), "--target", target, *extra],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{op} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1024", help="database sizes in MB (comma list)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (the fastest counts)")
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tradeguard-bench-backup"))
    parser.add_argument("--keep", action="store_true", help="keep the backups written (databases are always kept)")
    parser.add_argument("--child")
    parser.add_argument("--db-file")
    parser.add_argument("--target")
    parser.add_argument("--id")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.db_file), args.target)))
        return 0

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}, work dir {work}")
    print(f"{'size':>8} {'step':<9} {'seconds':>8} {'MB/s':>8} {'peak RSS':>9} {'growth':>8}  notes")
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = work / f"db{size}"
        path = folder / "tradeguard.db"
        if not path.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            t0 = time.perf_counter()
            build(path, size)
            print(f"built {path} ({path.stat().st_size >> 20} MB) in {time.perf_counter() - t0:.0f} s")
        target_dir = folder / "backups"
        shutil.rmtree(target_dir, ignore_errors=True)
        target = f"file://{target_dir}"
        mb = path.stat().st_size / (1 << 20)
        baselines, backups = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            baselines.append(run_child("baseline", path, target))
            backups.append(run_child("backup", path, target))
        baseline = min(baselines, key=lambda r: r["seconds"])
        backup = min(backups, key=lambda r: r["seconds"])
        verify = min((run_child("verify", path, target, ["--id", backup["id"]]) for _ in range(args.repeat)),
                     key=lambda r: r["seconds"])
        ratio = backup["seconds"] / baseline["seconds"]
        for name, r, note in (
            ("baseline", baseline, "SQLite online backup to a local file"),
            ("backup", backup, f"{ratio:.2f}x baseline; stored {backup['stored'] / (1 << 20):.0f} MB "
                               f"({backup['stored'] / backup['snapshot']:.0%} of the snapshot)"),
            ("verify", verify, "decrypt+authenticate+SHA-256, integrity_check, audit verify"),
        ):
            print(f"{mb:>6.0f}MB {name:<9} {r['seconds']:>8.2f} {mb / r['seconds']:>8.0f} {r['peak_kb'] / 1024:>7.0f}MB "
                  f"{r['growth_kb'] / 1024:>6.0f}MB  {note}")
        print(f"ratio backup/baseline at {mb:.0f} MB: {ratio:.2f}")
        if not args.keep:
            shutil.rmtree(target_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
