"""Helpers for the backup tests: sample data, row-by-row table dumps, backup file surgery."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

PASSPHRASE = "backup test passphrase"
SECRET = "sk-live-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e"


def fill(engine: Any, accounts: int = 3, blob_kb: int = 0) -> None:
    """Accounts with limits, credentials (one known secret), plugin state, optional random bytes."""
    from tradeguard.storage import use_database
    from tradeguard.storage.models import PluginState

    for i in range(accounts):
        engine.accounts.add(f"acct{i}", "paper", initial_capital="1000.000000000000000001", max_daily_loss="12.5")
    engine.vault.set_credentials("acct0", {"api_key": SECRET, "api_secret": "s3cr3t-" + SECRET[::-1]})
    with use_database(engine.db), engine.db.atomic():
        for i in range(20):
            PluginState.create(plugin="paper", key=f"book{i}", value={"bids": [[f"{i}.1", "0.000000000000000001"]]})
        if blob_kb:
            noise = base64.b64encode(os.urandom(blob_kb * 768)).decode()
            PluginState.create(plugin="test", key="noise", value={"noise": noise})


def table_rows(db: Any) -> dict[str, list[tuple]]:
    """Every table's rows of the peewee database *db*, ordered, as tuples (the row-by-row comparison)."""
    from tradeguard.storage.models import ALL_MODELS

    out = {}
    for model in ALL_MODELS:
        name = model._meta.table_name
        cur = db.execute_sql(f'SELECT * FROM "{name}" ORDER BY 1')
        out[name] = [tuple(str(v) if v is not None else None for v in row) for row in cur.fetchall()]
    return out


def at_snapshot(rows: dict[str, list[tuple]], audit_seq: int) -> dict[str, list[tuple]]:
    """*rows* without what a backup adds after its snapshot (its own record and audit entry)."""
    out = dict(rows)
    out["backup"] = []
    out["audit_log"] = [r for r in rows["audit_log"] if int(r[0]) <= audit_seq]
    return out


def header_length(path: Path) -> int:
    from tradeguard.backup.stream import Header

    with open(path, "rb") as fh:
        _, raw = Header.read(fh)
    return len(raw)


def chunks(path: Path, chunk_size: int) -> tuple[bytes, list[bytes]]:
    """The raw header and the sealed chunks of a backup object."""
    data = path.read_bytes()
    n = header_length(path)
    size = chunk_size + 16
    body = data[n:]
    return data[:n], [body[i:i + size] for i in range(0, len(body), size)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))
