"""The backup data key: where it comes from and how a header carries it.

Backups are encrypted under the vault's *backup data key* (``engine.vault``).
The header of every backup carries that key wrapped by the master key,
together with the vault's master record (KDF name, salt, parameters and key
check value), so the passphrase or key file alone opens a backup when the
database is lost, and a stolen backup without the master key is useless.

The rest of `tradeguard.backup` only sees this small interface:

* `BackupKey` -- ``key_id``, ``key`` (32 bytes), ``wrapped_key`` and ``kdf_params``;
* `backup_key_for(engine)` -- the key for a new backup (VaultLocked without the master key);
* `unwrap_backup_key(key_id, wrapped_key, kdf_params, master_key)` -- the key
  from a header and the master key material alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from tradeguard.errors import IntegrityError, VaultError, WrongMasterKey

SCHEME = "vault-v1"


@dataclass(frozen=True)
class BackupKey:
    """A backup data key and what a header needs to recover it from the master key."""

    key_id: str
    key: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    kdf_params: dict[str, Any]

    def __repr__(self) -> str:
        return f"BackupKey(key_id={self.key_id!r}, scheme={self.kdf_params.get('scheme')!r})"


def backup_key_for(engine: Any) -> BackupKey:
    """The vault's active backup data key, with the header fields that recover it.

    Raises VaultLocked when the engine was opened without the master key.
    """
    key = engine.vault.backup_key()
    return BackupKey(key.key_id, key.key, bytes(key.wrapped_key), dict(key.kdf_params))


def unwrap_backup_key(key_id: str, wrapped_key: bytes, kdf_params: Mapping[str, Any], master_key: Any) -> bytes:
    """The data key of a backup header, recovered from the master key material alone.

    WrongMasterKey when the material does not open it; IntegrityError when the
    header's key fields are not something the vault wrote (altered).
    """
    from tradeguard.vault.keys import unwrap_backup_key as vault_unwrap

    if kdf_params.get("scheme") != SCHEME or not isinstance(kdf_params.get("master"), Mapping):
        raise IntegrityError(f"unknown key scheme {kdf_params.get('scheme')!r} in the backup header (altered?)")
    try:
        return vault_unwrap(key_id, wrapped_key, kdf_params, master_key)
    except WrongMasterKey as exc:
        text = str(exc)
        if "unlocked with" in text:  # a passphrase given where a key file was used, or the reverse
            raise WrongMasterKey(text.replace("this vault is unlocked with", "this backup was made with")) from None
        raise WrongMasterKey("wrong master key: it does not open this backup") from None
    except VaultError as exc:
        if "malformed" in str(exc) or "unknown" in str(exc):
            raise IntegrityError(f"the backup header's key fields are malformed (altered): {exc}") from None
        raise
