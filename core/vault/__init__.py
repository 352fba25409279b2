"""The vault (``engine.vault``): encrypted credentials under a key hierarchy.

* ``unlock(master_key)`` checks the key against the stored key check value
  (a wrong key raises `WrongMasterKey` and is itself an audit entry) and
  unwraps the data keys; the first key given to a new installation becomes
  its master key.
* Credentials are AES-256-GCM ciphertexts in the ``credential`` table, bound
  to their account and field, each naming its data key.
* ``provider_for(account)`` is the only way an adapter gets secrets: the
  Engine hands it to the account's own exchange or wallet adapter, which calls
  it when it builds its client. Every decryption is an audit entry.
* ``rotate(...)`` re-wraps the data keys under a new master key and, with
  ``data_keys=True``, re-encrypts every secret under a new credentials key
  (resumable: an interrupted rotation leaves every secret readable and a rerun
  finishes it). Retired keys stay resolvable by id.

See docs/security.md.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import peewee

from tradeguard import audit
from tradeguard.audit.chain import clear_sealer, set_sealer, write_transaction
from tradeguard.clock import isoformat, utcnow
from tradeguard.errors import IntegrityError, NotFound, ValidationError, VaultLocked, WrongMasterKey
from tradeguard.service import Service, in_engine_db
from tradeguard.storage import backend_of
from tradeguard.storage.models import Account, Credential, Setting, VaultKey
from tradeguard.vault import crypto
from tradeguard.vault.keys import (
    BACKUP_SCHEME,
    PURPOSES,
    DataKey,
    MasterKey,
    MasterKeyInput,
    MasterRecord,
    new_data_key,
    new_master,
    open_master,
    VaultBackupKey,
    parse_master_key,
    unwrap_backup_key,
)
from tradeguard.vault.secrets import SecretProvider, Secrets, mask

if TYPE_CHECKING:
    from tradeguard.engine import Engine

log = logging.getLogger("tradeguard.vault")

RECORD_KEY = "vault.master"
#: Secret fields every account may hold, besides those its plugins declare.
STANDARD_FIELDS = ("api_key", "api_secret", "passphrase", "wallet_private_key")
DEFAULT_FIELDS = ("api_key", "api_secret")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VAULT_LOCK_KEY = 0x7467766C74  # "tgvlt": serialises vault initialisation on PostgreSQL
CRASH_ENV = "TRADEGUARD_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    """Test hook: SIGKILL this process at *name* if ``TRADEGUARD_TEST_CRASH_AT`` says so."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Vault(Service):
    """Encrypted credentials and the data keys (``engine.vault``)."""

    def __init__(self, engine: "Engine"):
        super().__init__(engine)
        self._master: MasterKey | None = None
        self._keys: dict[str, DataKey] = {}
        self._pending: MasterKeyInput | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Vault {'locked' if self.locked else 'unlocked'}>"

    # -- state ---------------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        """True until a master key has been given and checked."""
        return self._master is None

    @in_engine_db
    def initialised(self) -> bool:
        """Has this installation a master key yet?"""
        return self._record() is not None

    def _record(self) -> MasterRecord | None:
        if not self.engine.db.table_exists(Setting._meta.table_name):
            return None
        row = Setting.get_or_none(Setting.key == RECORD_KEY)
        return MasterRecord.from_dict(row.value) if row else None

    def defer(self, master_key: Any) -> None:
        """Remember *master_key* and unlock only when a secret is first needed."""
        self._pending = parse_master_key(master_key)

    def _require_unlocked(self, why: str) -> None:
        if self._master is None and self._pending is not None:
            pending, self._pending = self._pending, None
            self.unlock(pending)
        if self._master is None:
            raise VaultLocked(f"{why} needs the master key: the vault is locked "
                              "(set TRADEGUARD_MASTER_KEY or master_key_file, or pass master_key=)")

    # -- unlocking ------------------------------------------------------------------------------

    @in_engine_db
    def unlock(self, master_key: Any, *, actor: str = "engine", checkpoint: bool = True) -> None:
        """Check *master_key* and unwrap the data keys (or, for a new installation, create them).

        Raises WrongMasterKey (recorded in the audit trail) before any secret is touched.
        A sealed audit checkpoint is written if entries were appended while locked.
        """
        given = parse_master_key(master_key)
        with self._lock:
            record = self._record()
            fresh = False
            if record is None:
                record = self._initialise(given, actor)
                fresh = self._master is not None and self._master.key_id == record.key_id
            if not fresh:
                try:
                    master = open_master(given, record)
                except WrongMasterKey as exc:
                    with write_transaction(self.engine.db):
                        audit.append(actor, "vault.unlock_failed", "vault",
                                     {"master_key_id": record.key_id, "reason": str(exc)})
                    raise
                self._load_keys(master)
        if checkpoint:
            self.engine.audit.checkpoint_if_unsealed("unlock")

    def _initialise(self, given: MasterKeyInput, actor: str) -> MasterRecord:
        """Create the master record and the three data keys (once per installation)."""
        record, master = new_master(given)
        db = self.engine.db
        with write_transaction(db):
            if backend_of(db) == "postgres":
                db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_VAULT_LOCK_KEY,))
            existing = self._record()
            if existing is not None:  # another process initialised it first
                return existing
            Setting.create(key=RECORD_KEY, value=record.to_dict(), updated_at=utcnow())
            keys = [new_data_key(purpose) for purpose in PURPOSES]
            for key in keys:
                VaultKey.create(key_id=key.key_id, purpose=key.purpose, wrapped=master.wrap(key.key_id, key.purpose, key.material),
                                master_key_id=master.key_id)
            self._install(master, keys)
            audit.append(actor, "vault.init", "vault", {"master_key_id": master.key_id, "kind": record.kind,
                                                         "kdf": record.kdf.algorithm if record.kdf else None,
                                                         "data_keys": {k.purpose: k.key_id for k in keys}})
        return record

    def _load_keys(self, master: MasterKey) -> None:
        keys = []
        for row in VaultKey.select().order_by(VaultKey.created_at):
            if row.master_key_id != master.key_id:
                raise IntegrityError(f"vault key {row.key_id} is wrapped by unknown master key {row.master_key_id}")
            try:
                material = master.unwrap(row.key_id, row.purpose, row.wrapped)
            except crypto.DecryptionFailed:
                raise IntegrityError(f"vault key {row.key_id} does not unwrap: the vault_key table was altered") from None
            keys.append(DataKey(row.key_id, row.purpose, material, retired=row.retired_at is not None))
        self._install(master, keys)

    def _install(self, master: MasterKey, keys: Iterable[DataKey]) -> None:
        self._master = master
        self._keys = {k.key_id: k for k in keys}
        active = self._active_or_none("audit")
        if active is not None:
            set_sealer(self.engine.db, active.key_id, active.material)

    def lock(self) -> None:
        """Forget the master key and the data keys (entries appended from now on are chained only)."""
        with self._lock:
            self._master = None
            self._keys = {}
            self._pending = None
            clear_sealer(self.engine.db)

    # -- keys for other services --------------------------------------------------------------

    def _active_or_none(self, purpose: str) -> DataKey | None:
        active = [k for k in self._keys.values() if k.purpose == purpose and not k.retired]
        return active[-1] if active else None

    def _active(self, purpose: str) -> DataKey:
        self._require_unlocked(f"the {purpose} key")
        key = self._active_or_none(purpose)
        if key is None:
            raise IntegrityError(f"the vault has no active {purpose} key")
        return key

    def key(self, key_id: str) -> DataKey:
        """Any data key by id, retired ones included (old seals, old backups)."""
        self._require_unlocked(f"key {key_id}")
        try:
            return self._keys[key_id]
        except KeyError:
            raise NotFound(f"no vault key {key_id!r} in this installation") from None

    def audit_keys(self) -> dict[str, bytes] | None:
        """Every audit key by id (for verifying seals), or None while locked."""
        if self._master is None:
            return None
        return {k.key_id: k.material for k in self._keys.values() if k.purpose == "audit"}

    def active_audit_key(self) -> DataKey | None:
        """The key new seals use, or None while locked."""
        return self._active_or_none("audit") if self._master is not None else None

    @in_engine_db
    def backup_key(self) -> VaultBackupKey:
        """The active backup data key, with the wrapped copy and the master record a
        backup header carries (so the passphrase or key file alone restores it).
        VaultLocked without the master key."""
        key = self._active("backup")
        row = VaultKey.get(VaultKey.key_id == key.key_id)
        record = self._record()
        assert record is not None
        return VaultBackupKey(key.key_id, key.material, row.wrapped.encode("ascii"),
                              {"scheme": BACKUP_SCHEME, "master": record.to_dict()})

    # -- credentials ---------------------------------------------------------------------------

    def _account(self, account: str | Account) -> Account:
        name = account.name if isinstance(account, Account) else account
        return self.engine.accounts.get(name)

    def allowed_fields(self, account: str | Account) -> list[str]:
        """Secret fields *account* may hold: the standard ones plus those its plugins declare."""
        acct = self._account(account)
        fields = set(STANDARD_FIELDS) | set(self._declared(acct.exchange))
        for registration in self.engine.plugins.wallets:
            fields.update(s.name for s in registration.settings if s.secret)
        return sorted(fields)

    def default_fields(self, account: str | Account) -> list[str]:
        """Fields `creds set` asks for: those the venue declares secret, else api_key and api_secret."""
        acct = self._account(account)
        return self._declared(acct.exchange) or list(DEFAULT_FIELDS)

    def _declared(self, exchange: str) -> list[str]:
        if exchange not in self.engine.plugins.exchanges:
            return []
        return [s.name for s in self.engine.plugins.exchanges.get(exchange).settings if s.secret]

    def venue_authenticates(self, account: str | Account) -> bool:
        """Does the account's venue plugin declare secret settings (so a real authenticated call can check them)?"""
        return bool(self._declared(self._account(account).exchange))

    @in_engine_db
    def set_credentials(self, account: str | Account, values: Mapping[str, str], *, actor: str = "cli") -> list[str]:
        """Encrypt and store secret fields for *account* (replacing those already set)."""
        acct = self._account(account)
        if not values:
            raise ValidationError("no credential given")
        allowed = set(self.allowed_fields(acct))
        clean: dict[str, str] = {}
        for field, value in values.items():
            if not _FIELD.match(field or ""):
                raise ValidationError(f"credential field {field!r}: use lower-case letters, digits and '_'")
            if field not in allowed:
                raise ValidationError(f"credential field {field!r} is not used by {acct.exchange!r} "
                                      f"(known: {', '.join(sorted(allowed))})")
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"credential field {field!r} is empty")
            clean[field] = value.strip()
        key = self._active("credentials")
        with write_transaction(self.engine.db):
            acct = Account.get_by_id(acct.id)
            for field, value in sorted(clean.items()):
                ciphertext = crypto.encrypt(key.material, key.key_id, value.encode("utf-8"), _aad(acct.id, field))
                Credential.insert(account=acct.id, field=field, ciphertext=ciphertext, key_id=key.key_id,
                                  updated_at=utcnow()).on_conflict(
                    conflict_target=[Credential.account, Credential.field],
                    update={Credential.ciphertext: ciphertext, Credential.key_id: key.key_id,
                            Credential.updated_at: utcnow()}).execute()
            acct.credentials_verified = False
            acct.save(only=[Account.credentials_verified])
            audit.append(actor, "credential.set", f"account:{acct.name}", {"fields": sorted(clean), "key_id": key.key_id})
        return sorted(clean)

    @in_engine_db
    def credential_fields(self, account: str | Account) -> list[dict[str, Any]]:
        """Which fields are stored for *account*, under which key (no secret needed)."""
        acct = self._account(account)
        return [{"field": c.field, "key_id": c.key_id, "updated_at": isoformat(c.updated_at)}
                for c in Credential.select().where(Credential.account == acct.id).order_by(Credential.field)]

    @in_engine_db
    def remove_credentials(self, account: str | Account, fields: Iterable[str] = (), *, actor: str = "cli") -> list[str]:
        """Delete stored secrets (all of the account's, or *fields*). Needs no master key."""
        acct = self._account(account)
        fields = list(fields)
        with write_transaction(self.engine.db):
            query = Credential.select().where(Credential.account == acct.id)
            stored = {c.field for c in query}
            if not stored:
                raise ValidationError(f"account {acct.name!r} has no stored credentials")
            missing = sorted(set(fields) - stored)
            if missing:
                raise ValidationError(f"account {acct.name!r} has no stored {', '.join(missing)}")
            removed = sorted(fields or stored)
            Credential.delete().where((Credential.account == acct.id) & (Credential.field.in_(removed))).execute()
            Account.update(credentials_verified=False).where(Account.id == acct.id).execute()
            audit.append(actor, "credential.remove", f"account:{acct.name}", {"fields": removed})
        return removed

    @in_engine_db
    def secrets_for(self, account: str | Account, *, purpose: str, actor: str = "engine",
                    fields: Iterable[str] | None = None) -> Secrets:
        """Decrypt every secret of *account*; each decryption is an audit entry (who, field, why).

        Only the Engine calls this, when it builds the account's own adapter
        (through `provider_for`) or for ``creds check``. Never hand the result
        to another plugin. *fields* limits decryption to those fields (an adapter's declared secrets).
        """
        acct = self._account(account)
        query = Credential.select().where(Credential.account == acct.id)
        if fields is not None:
            query = query.where(Credential.field.in_(list(fields)))
        creds = list(query.order_by(Credential.field))
        if not creds:
            return Secrets(acct.name, {})
        self._require_unlocked(f"account {acct.name!r}'s credentials")
        # decrypt first (a failure is recorded in its own transaction), then record every decryption
        values = {cred.field: self._decrypt(acct, cred, actor) for cred in creds}
        with write_transaction(self.engine.db):
            # lock order: the account row first, the audit head last (as everywhere else)
            if purpose == "adapter":
                Account.update(credentials_last_used=utcnow()).where(Account.id == acct.id).execute()
            for cred in creds:
                audit.append(actor, "credential.decrypt", f"account:{acct.name}",
                             {"field": cred.field, "purpose": purpose, "key_id": cred.key_id})
        return Secrets(acct.name, values)

    def provider_for(self, account: str | Account, *, actor: str = "engine") -> SecretProvider:
        """A callable the account's own adapter calls when it builds its client."""
        name = account.name if isinstance(account, Account) else account
        return SecretProvider(name, lambda: self.secrets_for(name, purpose="adapter", actor=actor))

    def _decrypt(self, acct: Account, cred: Credential, actor: str) -> str:
        try:
            envelope = crypto.parse(cred.ciphertext)
            if envelope.key_id != cred.key_id:
                raise crypto.DecryptionFailed("key id mismatch")
            key = self._keys.get(cred.key_id)
            if key is None:
                raise crypto.DecryptionFailed("unknown key")
            return crypto.decrypt(key.material, envelope, _aad(acct.id, cred.field)).decode("utf-8")
        except crypto.DecryptionFailed:
            with write_transaction(self.engine.db):
                audit.append(actor, "credential.decrypt_failed", f"account:{acct.name}",
                             {"field": cred.field, "key_id": cred.key_id})
            raise IntegrityError(f"credential {cred.field} of account {acct.name!r} does not decrypt "
                                 "(altered, copied from another row, or its key is missing)") from None

    @in_engine_db
    def check(self, account: str | Account, *, actor: str = "cli") -> dict[str, str]:
        """Decrypt *account*'s secrets (audited, purpose ``check``) and return them masked."""
        acct = self._account(account)
        secrets = self.secrets_for(acct, purpose="check", actor=actor)
        if not secrets:
            raise ValidationError(f"account {acct.name!r} has no stored credentials: run `tradeguard creds set {acct.name}`")
        return {field: mask(value) for field, value in secrets.items()}

    @in_engine_db
    def mark_tested(self, account: str | Account, ok: bool) -> None:
        """Record the outcome of an authenticated venue call with the account's credentials."""
        acct = self._account(account)
        Account.update(credentials_verified=ok, credentials_last_tested=utcnow()).where(Account.id == acct.id).execute()

    # -- status and rotation --------------------------------------------------------------------

    @in_engine_db
    def status(self) -> dict[str, Any]:
        """Initialised?, locked?, the master key id and KDF, every data key and what uses it."""
        record = self._record()
        in_use: dict[str, int] = {}
        if record is not None:
            for key_id, count in (Credential.select(Credential.key_id, peewee.fn.COUNT(Credential.id))
                                  .group_by(Credential.key_id).tuples()):
                in_use[key_id] = count
        keys = [{"key_id": k.key_id, "purpose": k.purpose, "created_at": isoformat(k.created_at),
                 "retired_at": isoformat(k.retired_at) if k.retired_at else None,
                 "credentials": in_use.get(k.key_id, 0)}
                for k in VaultKey.select().order_by(VaultKey.created_at, VaultKey.key_id)] if record else []
        return {
            "initialised": record is not None,
            "locked": self.locked,
            "master_key_id": record.key_id if record else None,
            "master_kind": record.kind if record else None,
            "kdf": record.kdf.to_dict() if record and record.kdf else None,
            "data_keys": keys,
            "credential_key_ids": sorted(in_use),
        }

    @in_engine_db
    def rotate(self, new_master_key: Any = None, *, data_keys: bool = False, actor: str = "cli") -> dict[str, Any]:
        """Rotate keys. *data_keys*: new credentials/audit/backup keys, every secret
        re-encrypted (resumes an interrupted run instead of starting another);
        *new_master_key*: re-wrap every data key (old ones too) under it. Needs the vault unlocked."""
        self._require_unlocked("key rotation")
        if new_master_key is None and not data_keys:
            raise ValidationError("nothing to rotate: give a new master key, data_keys=True, or both")
        given = parse_master_key(new_master_key) if new_master_key is not None else None
        result: dict[str, Any] = {}
        if data_keys:
            result.update(self._rotate_data_keys(actor))
        if given is not None:
            result.update(self._rewrap(given, actor))
        return result

    def _rotate_data_keys(self, actor: str) -> dict[str, Any]:
        current = self._active("credentials")
        pending = list(Credential.select().where(Credential.key_id != current.key_id).order_by(Credential.id))
        resumed = bool(pending)
        if not resumed:
            assert self._master is not None
            new_keys = [new_data_key(purpose) for purpose in PURPOSES]
            with write_transaction(self.engine.db):
                now = utcnow()
                retired = [k.key_id for k in self._keys.values() if not k.retired]
                VaultKey.update(retired_at=now).where(VaultKey.retired_at.is_null()).execute()
                for key in new_keys:
                    VaultKey.create(key_id=key.key_id, purpose=key.purpose,
                                    wrapped=self._master.wrap(key.key_id, key.purpose, key.material),
                                    master_key_id=self._master.key_id, created_at=now)
                audit.append(actor, "vault.rotate_data_keys", "vault",
                             {"new": {k.purpose: k.key_id for k in new_keys}, "retired": sorted(retired)})
            for key_id in retired:
                old = self._keys[key_id]
                self._keys[key_id] = DataKey(old.key_id, old.purpose, old.material, retired=True)
            self._keys.update({k.key_id: k for k in new_keys})
            self._install(self._master, list(self._keys.values()))
            current = self._active("credentials")
            pending = list(Credential.select().where(Credential.key_id != current.key_id).order_by(Credential.id))
        done = 0
        for cred in pending:
            cred = Credential.get_by_id(cred.id)
            if cred.key_id == current.key_id:
                continue
            acct = Account.get_by_id(cred.account_id)
            value = self._decrypt(acct, cred, actor)
            with write_transaction(self.engine.db):
                old_key = cred.key_id
                cred.ciphertext = crypto.encrypt(current.material, current.key_id, value.encode("utf-8"),
                                                 _aad(acct.id, cred.field))
                cred.key_id = current.key_id
                cred.updated_at = utcnow()
                cred.save()
                audit.append(actor, "credential.reencrypt", f"account:{acct.name}",
                             {"field": cred.field, "from_key": old_key, "to_key": current.key_id})
            done += 1
            crash_point(f"rotate-after-{done}")
        return {"credentials_key_id": current.key_id, "reencrypted": done, "resumed": resumed}

    def _rewrap(self, given: MasterKeyInput, actor: str) -> dict[str, Any]:
        assert self._master is not None
        old_id = self._master.key_id
        record, master = new_master(given)
        with write_transaction(self.engine.db):
            rows = list(VaultKey.select())
            for row in rows:
                key = self._keys[row.key_id]
                row.wrapped = master.wrap(key.key_id, key.purpose, key.material)
                row.master_key_id = master.key_id
                row.save()
            Setting.update(value=record.to_dict(), updated_at=utcnow()).where(Setting.key == RECORD_KEY).execute()
            audit.append(actor, "vault.rotate_master", "vault", {"old_master_key_id": old_id,
                                                                  "new_master_key_id": master.key_id,
                                                                  "kind": record.kind, "rewrapped": len(rows)})
        self._master = master
        return {"old_master_key_id": old_id, "master_key_id": master.key_id, "rewrapped": len(rows)}


def _aad(account_id: int, field: str) -> bytes:
    return crypto.associated_data("credential", f"account={account_id}", field)


__all__ = ["DataKey", "SecretProvider", "Secrets", "Vault", "VaultBackupKey", "mask", "unwrap_backup_key"]
