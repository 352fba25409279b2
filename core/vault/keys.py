"""The key hierarchy.

* The **master key** comes from a passphrase (through `kdf`), a 32-byte key
  file, or ``base64:<44 chars>`` text. It is never stored and never encrypts
  data: it only wraps data keys. A key check value (an HMAC of a fixed label)
  tells a wrong master key apart before any secret is touched.
* **Data keys** (32 random bytes each, one per purpose: ``credentials``,
  ``audit``, ``backup``) are stored wrapped (AES-256-GCM under a key-encryption
  key derived from the master key) in the ``vault_key`` table. Rotation adds
  new ones and retires old ones; a retired key stays resolvable by id, so old
  audit seals and old backups remain verifiable.
* The master record (key id, kind, KDF salt and parameters, check value) is the
  ``vault.master`` row of the ``setting`` table: not secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tradeguard.errors import ValidationError, VaultError, WrongMasterKey
from tradeguard.vault import crypto
from tradeguard.vault.kdf import KEY_LENGTH, KdfParams, derive

PURPOSES = ("credentials", "audit", "backup")
RAW_PREFIX = "base64:"
MIN_PASSPHRASE = 8

_KEK_LABEL = b"tradeguard/kek/v1"
_KCV_LABEL = b"tradeguard/key-check/v1"


def new_key_id(prefix: str) -> str:
    """A fresh random key id like ``cred-1a2b3c4d``."""
    return f"{prefix}-{os.urandom(4).hex()}"


_PREFIX = {"credentials": "cred", "audit": "audit", "backup": "backup"}


# -- what the user gives ------------------------------------------------------------------


class MasterKeyInput:
    """A passphrase or raw key as given by the user. Redacts itself."""

    __slots__ = ("kind", "_value")

    def __init__(self, kind: str, value: bytes):
        self.kind = kind  # "passphrase" or "raw"
        self._value = value

    def __repr__(self) -> str:
        return f"<MasterKeyInput {self.kind} (redacted)>"

    __str__ = __repr__


def parse_master_key(value: Any) -> MasterKeyInput:
    """Turn what `Engine.open(master_key=...)` received into a `MasterKeyInput`.

    ``str``: a passphrase, or ``base64:<44 chars>`` for a raw 32-byte key;
    ``bytes``: a raw 32-byte key; a ``Path``: a key file.
    """
    if isinstance(value, MasterKeyInput):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != KEY_LENGTH:
            raise VaultError(f"a raw master key must be {KEY_LENGTH} bytes, got {len(raw)}")
        return MasterKeyInput("raw", raw)
    if isinstance(value, os.PathLike):
        return MasterKeyInput("raw", read_key_file(Path(value)))
    if isinstance(value, str):
        if value.startswith(RAW_PREFIX):
            return MasterKeyInput("raw", _decode_raw(value[len(RAW_PREFIX):]))
        if not value:
            raise VaultError("the master passphrase is empty")
        return MasterKeyInput("passphrase", value.encode("utf-8"))
    raise VaultError(f"master_key: expected a passphrase (str), 32 key bytes or a key file path, got {type(value).__name__}")


def _decode_raw(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise VaultError("the base64: master key is not valid base64") from None
    if len(raw) != KEY_LENGTH:
        raise VaultError(f"the base64: master key must decode to {KEY_LENGTH} bytes, got {len(raw)}")
    return raw


def read_key_file(path: Path) -> bytes:
    """Read a 32-byte master key file (raw bytes, or ``base64:`` text); refuse one others can read."""
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise VaultError(f"master key file {path} does not exist") from None
    except OSError as exc:
        raise VaultError(f"cannot read master key file {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VaultError(f"master key file {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):o}): chmod 600 {path}")
    if len(data) == KEY_LENGTH:
        return data
    text = data.decode("ascii", errors="replace").strip()
    if text.startswith(RAW_PREFIX):
        text = text[len(RAW_PREFIX):]
    try:
        return _decode_raw(text)
    except VaultError:
        raise VaultError(f"master key file {path} must hold {KEY_LENGTH} raw bytes or base64 text") from None


def create_key_file(path: Path) -> None:
    """Create *path* (mode 0600, never overwriting) holding 32 random bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValidationError(f"{path} already exists: refusing to overwrite a key file") from None
    except OSError as exc:
        raise ValidationError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(KEY_LENGTH))
        fh.flush()
        os.fsync(fh.fileno())


# -- the master record --------------------------------------------------------------------


@dataclass(frozen=True)
class MasterRecord:
    """What the database knows about the master key (nothing secret)."""

    key_id: str
    kind: str  # "passphrase" or "raw"
    kdf: KdfParams | None
    check: str  # key check value, hex

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "kind": self.kind, "kdf": self.kdf.to_dict() if self.kdf else None,
                "check": self.check, "format": 1}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MasterRecord":
        try:
            kdf = KdfParams.from_dict(data["kdf"]) if data.get("kdf") else None
            return cls(str(data["key_id"]), str(data["kind"]), kdf, str(data["check"]))
        except (KeyError, TypeError):
            raise VaultError("the vault record in the setting table is malformed") from None


class MasterKey:
    """An unlocked master key. Redacts itself; only wraps and unwraps data keys."""

    __slots__ = ("key_id", "_kek", "_check")

    def __init__(self, key_id: str, material: bytes):
        self.key_id = key_id
        self._kek = crypto.mac(material, _KEK_LABEL)
        self._check = crypto.mac(material, _KCV_LABEL, key_id.encode("ascii"))[:16].hex()

    def __repr__(self) -> str:
        return f"<MasterKey {self.key_id} (redacted)>"

    __str__ = __repr__

    @property
    def check_value(self) -> str:
        """The key check value stored in the master record."""
        return self._check

    def matches(self, record: MasterRecord) -> bool:
        return hmac.compare_digest(self._check, record.check)

    def wrap(self, key_id: str, purpose: str, material: bytes) -> str:
        """Encrypt a data key for the ``vault_key`` table."""
        return crypto.encrypt(self._kek, _kek_id(self.key_id), material, crypto.associated_data("vault_key", key_id, purpose))

    def unwrap(self, key_id: str, purpose: str, wrapped: str) -> bytes:
        """Decrypt a data key; DecryptionFailed if it was altered or moved."""
        envelope = crypto.parse(wrapped)
        return crypto.decrypt(self._kek, envelope, crypto.associated_data("vault_key", key_id, purpose))


def _kek_id(master_key_id: str) -> str:
    return "kek-" + master_key_id.split("-", 1)[1]


def new_master(given: MasterKeyInput, *, kdf_algorithm: str = "argon2id") -> tuple[MasterRecord, MasterKey]:
    """A new master record (fresh id, salt) and its unlocked key, from *given*."""
    key_id = new_key_id("mk")
    if given.kind == "passphrase":
        if len(given._value) < MIN_PASSPHRASE:
            raise VaultError(f"the master passphrase must have at least {MIN_PASSPHRASE} characters")
        kdf = KdfParams.new(kdf_algorithm)
        material = derive(given._value, kdf)
    else:
        kdf = None
        material = given._value
    key = MasterKey(key_id, material)
    return MasterRecord(key_id, given.kind, kdf, key.check_value), key


def open_master(given: MasterKeyInput, record: MasterRecord) -> MasterKey:
    """Derive the master key for *record*; WrongMasterKey if *given* does not match."""
    if given.kind != record.kind:
        expected = "a passphrase" if record.kind == "passphrase" else "a 32-byte key (key file or base64:)"
        raise WrongMasterKey(f"wrong master key: this vault is unlocked with {expected}")
    material = derive(given._value, record.kdf) if record.kdf else given._value
    key = MasterKey(record.key_id, material)
    if not key.matches(record):
        raise WrongMasterKey("wrong master key: it does not open this installation's vault")
    return key


# -- data keys ----------------------------------------------------------------------------


class DataKey:
    """An unwrapped data key with its id and purpose. Redacts itself."""

    __slots__ = ("key_id", "purpose", "retired", "_material")

    def __init__(self, key_id: str, purpose: str, material: bytes, retired: bool = False):
        self.key_id = key_id
        self.purpose = purpose
        self.retired = retired
        self._material = material

    def __repr__(self) -> str:
        return f"<DataKey {self.key_id} {self.purpose}{' retired' if self.retired else ''} (redacted)>"

    __str__ = __repr__

    @property
    def material(self) -> bytes:
        """The 32 key bytes (for the vault, audit seals and backups only)."""
        return self._material


def new_data_key(purpose: str) -> DataKey:
    """A fresh random data key for *purpose*."""
    if purpose not in PURPOSES:
        raise VaultError(f"unknown key purpose {purpose!r}")
    return DataKey(new_key_id(_PREFIX[purpose]), purpose, os.urandom(KEY_LENGTH))


@dataclass(frozen=True, repr=False)
class VaultBackupKey:
    """The backup data key as `tradeguard.backup` uses it: the key, and what a
    backup header needs to recover it from the passphrase or key file alone."""

    key_id: str
    key: bytes
    wrapped_key: bytes  # the key wrapped by the master key (``v1:kek-…:…`` as bytes)
    kdf_params: dict[str, Any]  # {"scheme": "vault-v1", "master": master record (KDF salt, parameters, check value)}

    def __repr__(self) -> str:
        return f"VaultBackupKey(key_id={self.key_id!r}, scheme='vault-v1')"


BACKUP_SCHEME = "vault-v1"


def unwrap_backup_key(key_id: str, wrapped_key: bytes, kdf_params: Mapping[str, Any], master_key: Any) -> bytes:
    """The backup data key from a backup header and the passphrase (or raw key) alone.

    Raises WrongMasterKey if *master_key* does not open it; needs no database.
    """
    if kdf_params.get("scheme") != BACKUP_SCHEME or "master" not in kdf_params:
        raise VaultError(f"unknown backup key scheme {kdf_params.get('scheme')!r}")
    record = MasterRecord.from_dict(kdf_params["master"])
    master = open_master(parse_master_key(master_key), record)
    wrapped = wrapped_key.decode("ascii") if isinstance(wrapped_key, (bytes, bytearray)) else str(wrapped_key)
    try:
        return master.unwrap(key_id, "backup", wrapped)
    except crypto.DecryptionFailed:
        raise WrongMasterKey("the master key does not open this backup's data key") from None


def master_key_from_settings(settings: Any) -> Any:
    """The master key the settings name, or None: ``master_key`` (``TRADEGUARD_MASTER_KEY``:
    a passphrase, or ``base64:<44 chars>``) wins over ``master_key_file``."""
    value = getattr(settings, "master_key", None)
    if value:
        return str(value)
    path = getattr(settings, "master_key_file", None)
    if path:
        return Path(os.path.expanduser(str(path)))
    return None
