"""Helpers for the vault and audit tests: keys, engines, raw-SQL tampering."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tradeguard.audit.chain import entry_hash

RAW_KEY = bytes(range(32))
RAW_KEY_TEXT = "base64:" + base64.b64encode(RAW_KEY).decode()
OTHER_KEY = bytes(range(1, 33))
PASSPHRASE = "correct horse battery staple"

COLUMNS = ("seq", "ts", "actor", "action", "subject", "payload", "prev_hash", "hash", "seal", "key_id")


def open_engine(url: str, home: Path, master_key: Any = RAW_KEY, **kwargs: Any) -> Any:
    from tradeguard import Engine

    return Engine.open(url, home=home, load_entrypoints=False, master_key=master_key, **kwargs)


def sql(engine: Any, statement: str, params: tuple = ()) -> list[tuple]:
    """Run raw SQL (``?`` placeholders, rewritten for PostgreSQL) in its own transaction."""
    statement = statement.replace("?", engine.db.param)
    with engine.db.atomic():
        cursor = engine.db.execute_sql(statement, params)
        try:
            return list(cursor.fetchall())
        except Exception:
            return []


def rows(engine: Any) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, r)) for r in sql(engine, f"SELECT {', '.join(COLUMNS)} FROM audit_log ORDER BY seq")]


def write_row(engine: Any, seq: int, values: dict[str, Any]) -> None:
    """Overwrite the non-seq columns of entry *seq* (an attacker with database access)."""
    cols = [c for c in COLUMNS if c != "seq"]
    sql(engine, f"UPDATE audit_log SET {', '.join(f'{c} = ?' for c in cols)} WHERE seq = ?",
        tuple(values[c] for c in cols) + (seq,))


def rewrite_from(engine: Any, start: int, **changes: Any) -> None:
    """Change entry *start* and recompute every hash from there on, consistently
    (seals left as they were: the attacker has no key)."""
    entries = rows(engine)
    prev = None
    for entry in entries:
        if entry["seq"] < start:
            prev = entry["hash"]
            continue
        if entry["seq"] == start:
            entry.update(changes)
        entry["prev_hash"] = prev
        entry["hash"] = entry_hash(entry["seq"], entry["ts"], entry["actor"], entry["action"], entry["subject"],
                                   entry["payload"], entry["prev_hash"])
        write_row(engine, entry["seq"], entry)
        prev = entry["hash"]


def add_accounts(engine: Any, count: int = 3) -> None:
    for index in range(count):
        engine.accounts.add(f"acct{index}", "paper")
