"""Memory stays flat however large the database: backing up and verifying a ~256 MB database
raises the process's peak RSS no more than doing the same on a 24 MB one, give or take a few
MB (measured, not timed). The fixed cost is mostly Argon2id's 64 MiB when the restored
database's vault is unlocked for `audit verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SMALL_MB = 24
DB_MB = 256
#: Extra peak RSS allowed for ten times the data.
GROWTH_LIMIT_MB = 12
#: Bound on the peak over the resting RSS, Argon2id's 64 MiB (unlocking the restored vault) included.
ABSOLUTE_LIMIT_MB = 110

SCRIPT = textwrap.dedent(
    """
    import json, os, sqlite3, sys
    from tradeguard import Engine

    home, target, small_mb, big_mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    url = f"sqlite:///{home}/tradeguard.db"
    noise = os.urandom(1 << 20).hex()  # rows cut from 2 MB of random hex: about 2:1 compressible, like real rows

    def rss_kb(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    def grow_to(mb):
        conn = sqlite3.connect(f"{home}/tradeguard.db")
        start = conn.execute("SELECT COUNT(*) FROM plugin_state").fetchone()[0]
        conn.executemany(
            "INSERT INTO plugin_state (plugin, key, value, updated_at) VALUES ('bulk', ?, ?, '2026-01-01T00:00:00.000000Z')",
            ((f"k{i}", json.dumps({"v": noise[(i * 4093) % (len(noise) - 4000):][:4000]}))
             for i in range(start, mb * 1024 // 4)))
        conn.commit()
        conn.close()
        return os.path.getsize(f"{home}/tradeguard.db")

    def measure():
        with Engine.open(url, home=home, master_key="memory test passphrase", load_entrypoints=False) as engine:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
            before = rss_kb("VmRSS:")
            made = engine.backups.create(target)
            engine.backups.verify(made["id"], target)
            return rss_kb("VmHWM:") - before

    Engine.open(url, home=home, master_key="memory test passphrase", load_entrypoints=False).close()
    small_bytes = grow_to(small_mb)
    measure()  # warm up: imports, thread pools, allocator arenas
    small_kb = measure()
    big_bytes = grow_to(big_mb)
    big_kb = measure()
    print(json.dumps({"small_bytes": small_bytes, "big_bytes": big_bytes, "small_growth_kb": small_kb, "big_growth_kb": big_kb}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc peak-RSS reset")
def test_backup_and_verify_memory_does_not_grow_with_the_database(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(home), f"file://{tmp_path / 'backups'}", str(SMALL_MB), str(DB_MB)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["big_bytes"] > (DB_MB - 20) << 20 and figures["big_bytes"] > 8 * figures["small_bytes"]
    small, big = figures["small_growth_kb"] / 1024, figures["big_growth_kb"] / 1024
    print(f"peak RSS over resting: {figures['small_bytes'] >> 20} MB database {small:.1f} MB, "
          f"{figures['big_bytes'] >> 20} MB database {big:.1f} MB")
    assert big - small < GROWTH_LIMIT_MB, figures
    assert big < ABSOLUTE_LIMIT_MB, figures
