"""The account lock: one write transaction that serialises everything that
changes an account's orders, reservations and positions.

SQLite: ``BEGIN IMMEDIATE`` (the database's single writer lock, taken at the
start so two checks can never interleave). PostgreSQL/MySQL: ``SELECT … FOR
UPDATE`` on the account rows, always in ascending id order, so two
transactions that lock several accounts cannot deadlock. The audit head is
locked last, by `tradeguard.audit.append`, which callers run at the end of
the transaction (`AccountTransaction.audit` defers the entries until then).

``TRADEGUARD_TEST_DISABLE_ACCOUNT_LOCK=1`` is a test-only switch that turns
the account lock off — no row lock on PostgreSQL, and the order path runs its
risk checks *before* the transaction, as a naive implementation would (SQLite
still serialises the writes themselves) — so the concurrency test can show
that, without it, limits are breached. Never set it anywhere else.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterable, Iterator

import peewee

from tradeguard.audit.chain import append_entries
from tradeguard.storage import backend_of, write_transaction  # noqa: F401 (re-exported)
from tradeguard.storage.models import Account

log = logging.getLogger("tradeguard.orders")

DISABLE_ENV = "TRADEGUARD_TEST_DISABLE_ACCOUNT_LOCK"


def lock_disabled() -> bool:
    """True only when the test-only switch is set."""
    return os.environ.get(DISABLE_ENV) == "1"


class AccountTransaction:
    """What a locked block collects: audit entries (written last) and callbacks run after commit."""

    def __init__(self) -> None:
        self._audits: list[tuple[str, str, str, dict[str, Any]]] = []
        self._after: list[Callable[[], None]] = []

    def audit(self, actor: str, action: str, subject: str, payload: dict[str, Any]) -> None:
        """Queue an audit entry; appended at the end of the transaction (the audit head is locked last)."""
        self._audits.append((actor, action, subject, payload))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run *callback* once the transaction committed (event hooks, venue calls)."""
        self._after.append(callback)

    def _flush_audit(self) -> None:
        if self._audits:
            append_entries(self._audits)  # one head read for all of them; no model objects
        self._audits.clear()


@contextlib.contextmanager
def account_lock(db: peewee.Database, account_ids: Iterable[int]) -> Iterator[AccountTransaction]:
    """Hold the lock of every account in *account_ids* for one transaction.

    Yields an `AccountTransaction`; queued audit entries are appended just
    before the commit, then the after-commit callbacks run (a failing
    callback is logged, never raised: the change is already durable).
    """
    ids = sorted(set(account_ids))
    tx = AccountTransaction()
    disabled = lock_disabled()
    with write_transaction(db):
        if not disabled and backend_of(db) != "sqlite" and ids:
            list(Account.select(Account.id).where(Account.id.in_(ids)).order_by(Account.id).for_update())
        yield tx
        tx._flush_audit()
    for callback in tx._after:
        try:
            callback()
        except Exception:
            log.exception("after-commit callback failed")
