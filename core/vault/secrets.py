"""Decrypted secrets as handed to a venue adapter: a read-only mapping that
never shows its values in ``repr``/``str``, and masking for display."""

from __future__ import annotations

from typing import Callable, Iterator, Mapping


class Secrets(Mapping[str, str]):
    """One account's decrypted secrets (field -> value). Redacts itself."""

    __slots__ = ("_account", "_values")

    def __init__(self, account: str, values: Mapping[str, str]):
        self._account = account
        self._values = dict(values)

    def __getitem__(self, field: str) -> str:
        return self._values[field]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Secrets {self._account}: {', '.join(sorted(self._values)) or 'none'} (redacted)>"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a cache, a queue or a crash dump
        raise TypeError("Secrets cannot be pickled")


class SecretProvider:
    """Gives one account's secrets to that account's own adapter, when it builds its client.

    Calling the provider decrypts (and audits) every secret field of the
    account; nothing is decrypted before that.
    """

    __slots__ = ("account", "_fetch")

    def __init__(self, account: str, fetch: Callable[[], Secrets]):
        self.account = account
        self._fetch = fetch

    def __call__(self) -> Secrets:
        return self._fetch()

    def __repr__(self) -> str:
        return f"<SecretProvider {self.account}>"


def mask(value: str) -> str:
    """``abcd…wxyz`` for long values; short ones show only their length."""
    if len(value) >= 16:
        return f"{value[:4]}…{value[-4:]}"
    return f"…({len(value)} chars)"
