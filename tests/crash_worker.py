"""Places orders in a loop until killed (tests/test_crash.py SIGKILLs it).

    python tests/crash_worker.py DB_URL HOME ACCOUNT

Prints one line per order once its outcome is known, flushed, so the test
can kill it at a chosen moment.
"""

import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from loopback_venue import LoopbackPlugin  # noqa: E402

from tradeguard import Engine  # noqa: E402


def main() -> None:
    db_url, home, account = sys.argv[1:4]
    with Engine.open(db_url, home=home, plugins=[LoopbackPlugin()], load_entrypoints=False) as engine:
        n = 0
        while True:
            n += 1
            side = "buy" if n % 2 else "sell"
            order = engine.place_order(account, "BTC/USDT", side, Decimal("0.001"), actor="crash-worker")
            print(f"{order.id} {order.status.value}", flush=True)


if __name__ == "__main__":
    main()
