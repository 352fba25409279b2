"""Benchmark: `sync --all` of many accounts against a slow venue.

100 LIVE Binance accounts (credentials in the vault) point, through their
``api_base_url``, at a stub Binance on loopback HTTP (tests/binance_stub.py,
a separate process) that answers every call after 50 ms. The real
``ccxt.binance`` class builds, signs and parses every request, so the measured
path is the one users run; only the venue is fake.

Measured in one run, after a first (cold) sync that sets each account's
baseline balances:

- sequential: each account synced one after the other (the baseline);
- concurrent: ``engine.sync()`` -- what ``tradeguard sync --all`` runs -- with
  the default concurrency;
- memory: peak RSS of this process.

Goal: concurrent under 1.5 s for 100 accounts and at least 10x faster than
sequential. ccxt's client-side rate limiter is turned off for these accounts
(setting ``rate_limit=false``): it paces requests by Binance's published
weights, which is not what this benchmark measures.

    .venv/bin/python bench/sync_many.py [--accounts 100] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_stub(latency: float, workdir: Path) -> tuple[subprocess.Popen, str]:
    port_file = workdir / "stub.url"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "binance_stub.py"), "--latency", str(latency),
                             "--port-file", str(port_file)])
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the stub venue did not start")
        time.sleep(0.05)
    return proc, port_file.read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description="sync --all of many accounts against a 50 ms venue")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the stub venue waits per call")
    parser.add_argument("--concurrency", type=int, default=None, help="default: tradeguard's (32)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from tradeguard import Engine

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proc, url = start_stub(args.latency, workdir)
        try:
            master_key = "base64:" + base64.b64encode(os.urandom(32)).decode()
            home = workdir / "home"
            home.mkdir(mode=0o700)
            with Engine.open(f"sqlite:///{workdir / 'tg.db'}", home=home, master_key=master_key,
                             load_entrypoints=False) as engine:
                names = [f"acct{i:03d}" for i in range(args.accounts)]
                for name in names:
                    engine.accounts.add(name, "binance", mode="live", mainnet=True, settings={"rate_limit": "false"})
                    engine.accounts.set(name, api_base_url=url)
                    engine.vault.set_credentials(name, {"api_key": f"key-{name}", "api_secret": f"secret-{name}"})

                start = time.perf_counter()
                cold = engine.sync(concurrency=args.concurrency)
                cold_s = time.perf_counter() - start
                _check(cold)

                start = time.perf_counter()
                sequential = [engine.sync(name)[0] for name in names]
                sequential_s = time.perf_counter() - start
                _check(sequential)

                start = time.perf_counter()
                concurrent = engine.sync(concurrency=args.concurrency)
                concurrent_s = time.perf_counter() - start
                _check(concurrent)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    calls = sum(r.api_calls for r in concurrent)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = sequential_s / concurrent_s
    print(f"accounts: {args.accounts}, venue latency {args.latency * 1000:.0f} ms/call, "
          f"{calls} API calls per sync --all ({calls / args.accounts:.1f} per account)")
    print(f"cold sync --all (first sync, loads markets): {cold_s:.3f} s")
    print(f"sequential (baseline):                       {sequential_s:.3f} s")
    print(f"sync --all (concurrent):                     {concurrent_s:.3f} s")
    print(f"speed-up vs sequential:                      {ratio:.1f}x")
    print(f"peak RSS:                                    {peak_mb:.0f} MB")
    goal = concurrent_s < 1.5 and ratio >= 10
    print(f"goal (< 1.5 s and >= 10x): {'met' if goal else 'NOT met'}")


def _check(results: list) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} account(s) failed, e.g. {failed[0].account}: {failed[0].error}")


if __name__ == "__main__":
    main()
