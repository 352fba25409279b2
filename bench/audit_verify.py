"""Benchmark: append N audit entries, then verify the chain without the key
(chain only) and with it (chain and seals).

Prints entries/s for each, appends/s in batched transactions, and the ratio
to a baseline measured in the same run: bare ``hashlib.sha256`` + ``hmac``
over the same canonical bytes, already in memory (no database, no encoding).

    python bench/audit_verify.py                  # 1,000,000 entries (a few minutes)
    python bench/audit_verify.py --entries 100000
    python bench/audit_verify.py --db postgresql://postgres@127.0.0.1/bench   # an EMPTY database
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

KEY = bytes(range(32))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="entries per transaction")
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--baseline-sample", type=int, default=200_000, help="entries hashed in memory for the baseline")
    args = parser.parse_args()

    from tradeguard import Engine, audit
    from tradeguard.audit.chain import SEAL_LABEL, entry_bytes
    from tradeguard.storage import use_database

    workdir = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    url = args.db or f"sqlite:///{workdir / 'bench.db'}"
    engine = Engine.open(url, home=workdir / "home", master_key=KEY, load_entrypoints=False)
    try:
        start_seq = engine.audit.head().seq
        # -- appends, sealed, in batched transactions ------------------------------------------
        t0 = time.perf_counter()
        done = 0
        with use_database(engine.db):
            while done < args.entries:
                with engine.db.atomic():
                    for _ in range(min(args.batch, args.entries - done)):
                        audit.append("bench", "order.state", f"order:{done}",
                                     {"order": done, "price": Decimal("64123.45"), "qty": Decimal("0.001"),
                                      "status": "FILLED", "account": "main"})
                        done += 1
        append_s = time.perf_counter() - t0
        total = engine.audit.head().seq

        # -- verify with the key (chain + seals) -----------------------------------------------
        t0 = time.perf_counter()
        sealed = engine.audit.verify(record=False)
        sealed_s = time.perf_counter() - t0
        assert sealed.ok and sealed.keyed and sealed.seals_checked >= args.entries, sealed.message

        # -- verify without the key (chain only) -----------------------------------------------
        engine.vault.lock()
        t0 = time.perf_counter()
        chain = engine.audit.verify(record=False)
        chain_s = time.perf_counter() - t0
        assert chain.ok and not chain.keyed, chain.message

        # -- baseline: the same bytes already in memory -----------------------------------------
        sample = min(args.baseline_sample, total)
        cursor = engine.db.execute_sql(
            f"SELECT seq, ts, actor, action, subject, payload, prev_hash FROM audit_log ORDER BY seq LIMIT {sample}")
        blobs = [entry_bytes(*row) for row in cursor.fetchall()]
        sha256, digest = hashlib.sha256, hmac.digest
        t0 = time.perf_counter()
        for blob in blobs:
            h = sha256(blob).hexdigest()
            digest(KEY, SEAL_LABEL + h.encode(), "sha256")
        base_both_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for blob in blobs:
            sha256(blob).hexdigest()
        base_hash_s = time.perf_counter() - t0
    finally:
        engine.close()

    base_both = len(blobs) / base_both_s
    base_hash = len(blobs) / base_hash_s
    chain_rate = total / chain_s
    sealed_rate = total / sealed_s
    print(f"backend          {engine.backend}  ({total:,} entries, {start_seq} before the run)")
    print(f"append           {args.entries / append_s:>12,.0f} entries/s  (sealed, {args.batch} per transaction)")
    print(f"verify chain     {chain_rate:>12,.0f} entries/s  ({chain_s:.2f} s)")
    print(f"verify + seals   {sealed_rate:>12,.0f} entries/s  ({sealed_s:.2f} s)")
    print(f"baseline sha256  {base_hash:>12,.0f} entries/s  (in memory, {len(blobs):,} entries)")
    print(f"baseline +hmac   {base_both:>12,.0f} entries/s  (in memory, sha256 + HMAC seal)")
    print(f"ratio chain/baseline sha256         {chain_rate / base_hash:.2f}")
    print(f"ratio seals/baseline sha256+hmac    {sealed_rate / base_both:.2f}")
    if not args.db:
        for path in workdir.glob("bench.db*"):
            os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
