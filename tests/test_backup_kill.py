"""A backup killed with SIGKILL (a real process) leaves nothing that `backup list` shows as valid."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backup_helpers import PASSPHRASE
from tradeguard import Engine


def _env(home: Path, target: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env.update(TRADEGUARD_HOME=str(home), TRADEGUARD_DISABLE_PLUGINS="1", TRADEGUARD_MASTER_KEY=PASSPHRASE,
               TRADEGUARD_BACKUP_TARGET=f"file://{target}", **extra)
    return env


def _tradeguard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradeguard.cli", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def big_home(home: Path) -> Path:
    """A home whose database holds ~70 MB of barely compressible rows (built with a bulk insert)."""
    with Engine.open(f"sqlite:///{home / 'tradeguard.db'}", home=home, master_key=PASSPHRASE, load_entrypoints=False):
        pass
    conn = sqlite3.connect(home / "tradeguard.db")
    rows = ((f"k{i}", json.dumps({"v": os.urandom(6000).hex()})) for i in range(6_000))
    conn.executemany("INSERT INTO plugin_state (plugin, key, value, updated_at) VALUES ('bulk', ?, ?, '2026-01-01T00:00:00.000000Z')", rows)
    conn.commit()
    conn.close()
    return home


def test_sigkill_mid_backup_leaves_nothing_listed_as_valid(big_home, tmp_path):
    target = tmp_path / "backups"
    env = _env(big_home, target)
    proc = subprocess.Popen([sys.executable, "-m", "tradeguard.cli", "backup", "create"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if target.exists() and any(p.name.startswith(".tmp-") and p.stat().st_size > 0 for p in target.iterdir()):
            break
        assert proc.poll() is None, f"the backup finished before it could be killed: {proc.stderr.read()}"
        time.sleep(0.005)
    else:
        pytest.fail("no partial file appeared")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in target.iterdir() if not p.name.startswith(".tmp-")] == []
    assert list(big_home.glob(".tradeguard-backup-*"))  # the killed run's scratch dir is still there

    listed = _tradeguard("backup", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []

    again = _tradeguard("backup", "create", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert not [p for p in big_home.glob(".tradeguard-backup-*")]  # the next run removed the stale scratch dir
    listed = json.loads(_tradeguard("backup", "list", "--json", env=env).stdout)
    assert [(b["id"], b["status"]) for b in listed] == [(json.loads(again.stdout)["id"], "ok")]


def test_killed_between_data_and_manifest_is_incomplete_and_pruned(home, tmp_path, monkeypatch):
    target = tmp_path / "backups"
    with Engine.open(f"sqlite:///{home / 'tradeguard.db'}", home=home, master_key=PASSPHRASE, load_entrypoints=False):
        pass
    env = _env(home, target, TRADEGUARD_TEST_CRASH_AT="backup-before-manifest")
    crashed = _tradeguard("backup", "create", env=env)
    assert crashed.returncode == -signal.SIGKILL
    names = [p.name for p in target.iterdir()]
    assert len(names) == 1 and names[0].endswith(".tgb")
    backup_id = names[0][:-4]

    env = _env(home, target)
    listed = json.loads(_tradeguard("backup", "list", "--json", env=env).stdout)
    assert [(b["id"], b["status"]) for b in listed] == [(backup_id, "incomplete")]
    refused = _tradeguard("backup", "verify", backup_id, env=env)
    assert refused.returncode == 2 and "no backup" in refused.stderr

    from tradeguard.backup import service

    monkeypatch.setattr(service, "PARTIAL_MAX_AGE", -1.0)
    with Engine.open(f"sqlite:///{home / 'tradeguard.db'}", home=home, master_key=PASSPHRASE, load_entrypoints=False) as engine:
        kept = engine.backups.create(f"file://{target}")
        result = engine.backups.prune(keep_last=1, target=f"file://{target}")
    assert result["incomplete_removed"] == [backup_id]
    assert sorted(p.name for p in target.iterdir()) == [f"{kept['id']}.tgb", f"{kept['id']}.tgm"]
