"""Benchmark: append N audit entries, then verify the chain without the key
(chain only) and with it (chain and seals).

Prints entries/s for each, appends/s in batched transactions, and the ratio
to a baseline measured in the same run: bare ``hashlib.sha256`` + ``hmac``
over the same canonical bytes, already in memory (no database, no encoding).
Each rate is given per wall-clock second and per CPU-second of this process
(on a shared machine the wall-clock figure mostly measures the neighbours).

    python bench/audit_verify.py                  # 1,000,000 entries (a few minutes)
    python bench/audit_verify.py --entries 100000
    python bench/audit_verify.py --db postgresql://postgres@127.0.0.1/bench   # an EMPTY database
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

KEY = bytes(range(32))


def best_of(repeat: int, run, keyed: bool | None = None) -> tuple[float, float]:
    """The fastest of *repeat* runs (wall, CPU): the first run also pays for cold caches."""
    times = []
    for _ in range(repeat):
        clock = Clock()
        report = run()
        times.append(clock.stop())
        if keyed is not None:
            assert report.ok and report.keyed == keyed, report.message
    return min(times, key=lambda t: t[1])


class Clock:
    """Wall-clock and CPU time of this process (CPU time shows the speed a shared, busy machine hides)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="entries per transaction")
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each verify (the best is shown)")
    parser.add_argument("--baseline-sample", type=int, default=200_000, help="entries hashed in memory for the baseline")
    args = parser.parse_args()

    from tradeguard import Engine, audit
    from tradeguard.audit.chain import entry_bytes, write_transaction
    from tradeguard.storage import use_database

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    workdir = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    url = args.db or f"sqlite:///{workdir / 'bench.db'}"
    engine = Engine.open(url, home=workdir / "home", master_key=KEY, load_entrypoints=False)
    try:
        # -- appends, sealed, in batched transactions ------------------------------------------
        clock = Clock()
        done = 0
        with use_database(engine.db):
            while done < args.entries:
                with write_transaction(engine.db):
                    for _ in range(min(args.batch, args.entries - done)):
                        audit.append("bench", "order.state", f"order:{done}",
                                     {"order": done, "price": Decimal("64123.45"), "qty": Decimal("0.001"),
                                      "status": "FILLED", "account": "main"})
                        done += 1
        append_t = clock.stop()
        total = engine.audit.head().seq

        # -- verify without the key (chain only) -----------------------------------------------
        engine.vault.lock()
        chain_t = best_of(args.repeat, lambda: engine.audit.verify(record=False), keyed=False)

        # -- verify with the key (chain + seals) -----------------------------------------------
        engine.vault.unlock(KEY)
        sealed_t = best_of(args.repeat, lambda: engine.audit.verify(record=False), keyed=True)

        # -- baseline: sha256 + HMAC-SHA256 over the same canonical bytes, already in memory ---
        sample = min(args.baseline_sample, total)
        cursor = engine.db.execute_sql(
            f"SELECT seq, ts, actor, action, subject, payload, prev_hash FROM audit_log ORDER BY seq LIMIT {sample}")
        blobs = [entry_bytes(*row) for row in cursor.fetchall()]
        sha256, new_hmac = hashlib.sha256, hmac.new

        def baseline() -> None:
            for blob in blobs:
                sha256(blob).hexdigest()
                new_hmac(KEY, blob, sha256).hexdigest()

        base_t = best_of(args.repeat, baseline)
    finally:
        engine.close()

    def rates(count: int, t: tuple[float, float]) -> tuple[float, float]:
        return count / t[0], count / t[1]

    app, chn, sld, base = rates(args.entries, append_t), rates(total, chain_t), rates(total, sealed_t), rates(len(blobs), base_t)
    print(f"backend {engine.backend}: {total:,} entries; load average before the run {load_before}")
    print(f"{'':18}{'wall entries/s':>16}{'per CPU-second':>16}")
    print(f"{'append (sealed)':18}{app[0]:>16,.0f}{app[1]:>16,.0f}   {args.batch} per transaction")
    print(f"{'verify chain':18}{chn[0]:>16,.0f}{chn[1]:>16,.0f}   {chain_t[0]:.1f} s")
    print(f"{'verify + seals':18}{sld[0]:>16,.0f}{sld[1]:>16,.0f}   {sealed_t[0]:.1f} s")
    print(f"{'baseline':18}{base[0]:>16,.0f}{base[1]:>16,.0f}   sha256 + hmac over the same bytes in memory, "
          f"{len(blobs):,} entries")
    print(f"ratio verify chain / baseline   {chn[0] / base[0]:.2f} wall   {chn[1] / base[1]:.2f} CPU")
    print(f"ratio verify + seals / baseline {sld[0] / base[0]:.2f} wall   {sld[1] / base[1]:.2f} CPU")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
