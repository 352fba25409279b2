"""The vault through the Engine API: encryption, binding, key hierarchy,
locked behaviour, what adapters receive, rotation, backup keys, redaction."""

from __future__ import annotations

import base64

import pytest

import vault_test_plugin
from tradeguard import IntegrityError, ValidationError, VaultLocked, WrongMasterKey
from tradeguard.errors import VaultError
from tradeguard.vault import unwrap_backup_key
from tradeguard.vault.keys import create_key_file

from vault_helpers import OTHER_KEY, PASSPHRASE, RAW_KEY, RAW_KEY_TEXT, open_engine, rows, sql

API_KEY = "AKIAIOSFODNN7EXAMPLEKEY"
API_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def keyed(db_url, home):
    """An unlocked Engine (both backends) with accounts main and other."""
    with open_engine(db_url, home) as eng:
        eng.accounts.add("main", "paper")
        eng.accounts.add("other", "paper")
        yield eng


def _credential(engine, account: str, field: str) -> tuple:
    return sql(engine, "SELECT c.ciphertext, c.key_id FROM credential c JOIN account a ON a.id = c.account_id "
                       "WHERE a.name = ? AND c.field = ?", (account, field))[0]


def test_secrets_are_stored_encrypted_with_key_id_and_version(keyed):
    keyed.vault.set_credentials("main", {"api_key": API_KEY, "api_secret": API_SECRET})
    ciphertext, key_id = _credential(keyed, "main", "api_key")
    assert ciphertext.startswith(f"v1:{key_id}:") and key_id.startswith("cred-")
    assert API_KEY not in ciphertext
    assert dict(keyed.vault.secrets_for("main", purpose="test")) == {"api_key": API_KEY, "api_secret": API_SECRET}
    keyed.vault.set_credentials("main", {"api_key": API_KEY})  # same value again: a fresh nonce
    assert _credential(keyed, "main", "api_key")[0] != ciphertext


def test_every_decryption_is_an_audit_entry(keyed):
    keyed.vault.set_credentials("main", {"api_key": API_KEY, "api_secret": API_SECRET}, actor="alice")
    keyed.vault.secrets_for("main", purpose="why-not", actor="bob")
    entries = [e for e in rows(keyed) if e["action"] == "credential.decrypt"]
    assert [(e["actor"], e["subject"]) for e in entries] == [("bob", "account:main")] * 2
    assert sorted(e["payload"] for e in entries)[0].startswith('{"field":"api_key"')
    assert all('"purpose":"why-not"' in e["payload"] for e in entries)
    assert all(API_KEY not in e["payload"] for e in rows(keyed))


def test_ciphertext_copied_to_another_row_or_field_does_not_decrypt(keyed):
    keyed.vault.set_credentials("main", {"api_key": API_KEY, "api_secret": API_SECRET})
    keyed.vault.set_credentials("other", {"api_key": "other-key-000000000", "api_secret": "other-secret-0000000"})
    ciphertext, _ = _credential(keyed, "main", "api_key")
    sql(keyed, "UPDATE credential SET ciphertext = ? WHERE field = 'api_key' AND account_id = "
               "(SELECT id FROM account WHERE name = 'other')", (ciphertext,))
    with pytest.raises(IntegrityError, match="api_key of account 'other' does not decrypt"):
        keyed.vault.secrets_for("other", purpose="test")
    sql(keyed, "UPDATE credential SET ciphertext = ? WHERE field = 'api_secret' AND account_id = "
               "(SELECT id FROM account WHERE name = 'main')", (ciphertext,))
    with pytest.raises(IntegrityError, match="api_secret"):
        keyed.vault.secrets_for("main", purpose="test")
    assert any(e["action"] == "credential.decrypt_failed" for e in rows(keyed))


def test_a_flipped_ciphertext_byte_is_refused(keyed):
    keyed.vault.set_credentials("main", {"api_key": API_KEY})
    ciphertext, key_id = _credential(keyed, "main", "api_key")
    blob = bytearray(base64.b64decode(ciphertext.split(":")[2]))
    blob[-1] ^= 1
    sql(keyed, "UPDATE credential SET ciphertext = ?", (f"v1:{key_id}:{base64.b64encode(bytes(blob)).decode()}",))
    with pytest.raises(IntegrityError):
        keyed.vault.secrets_for("main", purpose="test")


def test_bad_credential_input_changes_nothing(keyed):
    before = len(rows(keyed))
    with pytest.raises(ValidationError, match="not used by 'paper'"):
        keyed.vault.set_credentials("main", {"api_key": API_KEY, "pasword": "x"})
    with pytest.raises(ValidationError, match="empty"):
        keyed.vault.set_credentials("main", {"api_key": "  "})
    with pytest.raises(ValidationError, match="no account"):
        keyed.vault.set_credentials("nobody", {"api_key": API_KEY})
    with pytest.raises(ValidationError, match="no stored credentials"):
        keyed.vault.remove_credentials("main")
    assert len(rows(keyed)) == before
    assert sql(keyed, "SELECT COUNT(*) FROM credential")[0][0] == 0


def test_master_key_record_and_kdf_parameters_are_in_the_setting_table(db_url, home):
    with open_engine(db_url, home, master_key=PASSPHRASE) as eng:
        record = eng.get_setting("vault.master")
        assert record["kind"] == "passphrase" and record["kdf"]["algorithm"] == "argon2id"
        assert set(record["kdf"]) == {"algorithm", "salt", "iterations", "lanes", "memory_cost"}
        assert len(base64.b64decode(record["kdf"]["salt"])) == 16
        purposes = sorted(r[0] for r in sql(eng, "SELECT purpose FROM vault_key"))
        assert purposes == ["audit", "backup", "credentials"]
        assert all(r[0].startswith("v1:kek-") for r in sql(eng, "SELECT wrapped FROM vault_key"))


def test_wrong_master_key_is_refused_recorded_and_changes_nothing(db_url, home):
    with open_engine(db_url, home, master_key=PASSPHRASE) as eng:
        eng.accounts.add("main", "paper")
        eng.vault.set_credentials("main", {"api_key": API_KEY})
        stored = sql(eng, "SELECT ciphertext, key_id FROM credential")
        keys = sql(eng, "SELECT key_id, wrapped, master_key_id FROM vault_key ORDER BY key_id")
    with pytest.raises(WrongMasterKey, match="wrong master key"):
        open_engine(db_url, home, master_key="not the passphrase")
    with pytest.raises(WrongMasterKey, match="unlocked with a passphrase"):
        open_engine(db_url, home, master_key=RAW_KEY)
    with open_engine(db_url, home, master_key=None) as eng:
        failed = [e for e in rows(eng) if e["action"] == "vault.unlock_failed"]
        assert len(failed) == 2 and all(e["seal"] is None for e in failed)
        assert sql(eng, "SELECT ciphertext, key_id FROM credential") == stored
        assert sql(eng, "SELECT key_id, wrapped, master_key_id FROM vault_key ORDER BY key_id") == keys
        assert eng.audit.verify(record=False).ok


def test_raw_key_forms_bytes_base64_and_key_file(tmp_path, home):
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    with open_engine(url, home, master_key=RAW_KEY) as eng:
        eng.accounts.add("main", "paper")
        eng.vault.set_credentials("main", {"api_key": API_KEY})
    with open_engine(url, home, master_key=RAW_KEY_TEXT) as eng:
        assert eng.vault.secrets_for("main", purpose="t")["api_key"] == API_KEY
    key_file = tmp_path / "master.key"
    key_file.write_bytes(RAW_KEY)
    key_file.chmod(0o600)
    with open_engine(url, home, master_key=key_file) as eng:
        assert not eng.vault.locked
    key_file.chmod(0o644)
    with pytest.raises(VaultError, match="accessible by others"):
        open_engine(url, home, master_key=key_file)
    with pytest.raises(VaultError, match="32 bytes"):
        open_engine(url, home, master_key=b"short")
    with pytest.raises(WrongMasterKey):
        open_engine(url, home, master_key=OTHER_KEY)
    with pytest.raises(WrongMasterKey, match="32-byte key"):
        open_engine(url, home, master_key=PASSPHRASE)


def test_create_key_file_is_private_and_never_overwrites(tmp_path):
    path = tmp_path / "keys" / "master.key"
    create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_bytes()) == 32
    with pytest.raises(ValidationError, match="already exists"):
        create_key_file(path)


def test_a_new_passphrase_must_not_be_trivially_short(tmp_path, home):
    with pytest.raises(VaultError, match="at least 8"):
        open_engine(f"sqlite:///{tmp_path / 'tg.db'}", home, master_key="short")


def test_locked_vault_allows_everything_that_needs_no_secret(db_url, home):
    with open_engine(db_url, home) as eng:
        eng.accounts.add("main", "paper")
        eng.vault.set_credentials("main", {"api_key": API_KEY, "api_secret": API_SECRET})
    with open_engine(db_url, home, master_key=None) as eng:
        assert eng.vault.locked
        eng.accounts.add("second", "paper")
        eng.accounts.set("main", max_daily_loss="10")
        assert [a.name for a in eng.accounts.list()] == ["main", "second"]
        assert [f["field"] for f in eng.vault.credential_fields("main")] == ["api_key", "api_secret"]
        assert eng.audit.verify(record=False).ok
        with pytest.raises(VaultLocked, match="vault is locked"):
            eng.vault.secrets_for("main", purpose="test")
        with pytest.raises(VaultLocked):
            eng.vault.set_credentials("main", {"api_key": "x" * 20})
        assert eng.vault.remove_credentials("main", ["api_secret"]) == ["api_secret"]


def test_adapter_gets_only_its_own_accounts_declared_secrets_when_it_builds(tmp_path, home):
    vault_test_plugin.built.clear()
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    from tradeguard import Engine

    with Engine.open(url, home=home, load_entrypoints=False, master_key=RAW_KEY, plugins=[vault_test_plugin]) as eng:
        eng.accounts.add("a", "vaultvenue")
        eng.accounts.add("b", "vaultvenue")
        eng.vault.set_credentials("a", {"api_key": vault_test_plugin.GOOD_KEY, "api_secret": "secret-a-000000000",
                                        "wallet_private_key": "0x" + "ab" * 32})
        eng.vault.set_credentials("b", {"api_key": "key-of-b-000000000"})
        before = len([e for e in rows(eng) if e["action"] == "credential.decrypt"])
        adapter = eng.exchange_for("a")
        assert len([e for e in rows(eng) if e["action"] == "credential.decrypt"]) == before  # nothing decrypted yet
        assert "GOODKEY" not in repr(adapter.config) and "secret-a" not in str(adapter.config.secrets)
        adapter.fetch_balance()  # the adapter reads its secrets when it builds its client
        assert dict(adapter.config.secrets) == {"api_key": vault_test_plugin.GOOD_KEY, "api_secret": "secret-a-000000000"}
        decrypts = [e for e in rows(eng) if e["action"] == "credential.decrypt"][before:]
        assert {e["subject"] for e in decrypts} == {"account:a"}
        assert all('"purpose":"adapter"' in e["payload"] for e in decrypts)
        assert dict(eng.exchange_for("b").config.secrets) == {"api_key": "key-of-b-000000000"}


def test_master_key_rotation_rewraps_and_old_key_stops_working(db_url, home):
    with open_engine(db_url, home) as eng:
        eng.accounts.add("main", "paper")
        eng.vault.set_credentials("main", {"api_key": API_KEY})
        cred_before = sql(eng, "SELECT ciphertext, key_id FROM credential")
        result = eng.vault.rotate(OTHER_KEY)
        assert result["rewrapped"] == 3
        assert sql(eng, "SELECT ciphertext, key_id FROM credential") == cred_before  # data keys unchanged
    with pytest.raises(WrongMasterKey):
        open_engine(db_url, home, master_key=RAW_KEY)
    with open_engine(db_url, home, master_key=OTHER_KEY) as eng:
        assert eng.vault.secrets_for("main", purpose="t")["api_key"] == API_KEY
        assert eng.audit.verify(record=False).ok
        assert [e["action"] for e in rows(eng)].count("vault.rotate_master") == 1


def test_data_key_rotation_reencrypts_and_keeps_old_seals_verifiable(db_url, home):
    with open_engine(db_url, home) as eng:
        eng.accounts.add("main", "paper")
        eng.vault.set_credentials("main", {"api_key": API_KEY, "api_secret": API_SECRET})
        old = eng.vault.status()
        result = eng.vault.rotate(data_keys=True)
        assert result["reencrypted"] == 2 and not result["resumed"]
        new = eng.vault.status()
        assert new["credential_key_ids"] == [result["credentials_key_id"]] != old["credential_key_ids"]
        retired = [k for k in new["data_keys"] if k["retired_at"]]
        assert sorted(k["key_id"] for k in retired) == sorted(k["key_id"] for k in old["data_keys"])
        eng.accounts.add("after", "paper")
        key_ids = {e["key_id"] for e in rows(eng) if e["seal"]}
        assert len(key_ids) == 2  # seals under the old and the new audit key
    with open_engine(db_url, home) as eng:
        report = eng.audit.verify(record=False)
        assert report.ok and report.sealed_through == report.last_seq
        assert dict(eng.vault.secrets_for("main", purpose="t")) == {"api_key": API_KEY, "api_secret": API_SECRET}


def test_backup_key_unwraps_from_its_header_with_the_passphrase_alone(tmp_path, home):
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    with open_engine(url, home, master_key=PASSPHRASE) as eng:
        key = eng.vault.backup_key()
        assert key.kdf_params["scheme"] == "vault-v1" and "salt" in key.kdf_params["master"]["kdf"]
        header = (key.key_id, key.wrapped_key, key.kdf_params)
        eng.vault.rotate("a brand new passphrase", data_keys=True)
        assert eng.vault.backup_key().key_id != key.key_id
        assert eng.vault.key(key.key_id).material == key.key  # the old backup key stays resolvable
    assert unwrap_backup_key(*header, PASSPHRASE) == key.key  # an old backup, a lost database
    with pytest.raises(WrongMasterKey):
        unwrap_backup_key(*header, "a brand new passphrase")
    assert "key=" not in repr(key) and key.key.hex() not in repr(key)


def test_secret_holding_objects_redact_themselves(keyed):
    keyed.vault.set_credentials("main", {"api_key": API_KEY, "api_secret": API_SECRET})
    secrets = keyed.vault.secrets_for("main", purpose="t")
    master = keyed.vault._master
    data_key = keyed.vault.key(keyed.vault.status()["credential_key_ids"][0])
    from tradeguard.vault.keys import parse_master_key

    for obj in (secrets, master, data_key, parse_master_key(PASSPHRASE), keyed.vault, keyed.vault.provider_for("main"),
                keyed.vault.backup_key(), keyed.settings):
        for text in (repr(obj), str(obj)):
            for needle in (API_KEY, API_SECRET, PASSPHRASE, data_key.material.hex(), RAW_KEY.hex()):
                assert needle not in text, (type(obj), text)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secrets)


def test_concurrent_first_unlock_creates_one_vault(tmp_path, home):
    import threading

    url = f"sqlite:///{tmp_path / 'tg.db'}"
    open_engine(url, home, master_key=None).close()
    results = []

    def unlock() -> None:
        try:
            with open_engine(url, home) as eng:
                results.append(eng.vault.status()["master_key_id"])
        except Exception as exc:  # pragma: no cover
            results.append(exc)

    threads = [threading.Thread(target=unlock) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and isinstance(results[0], str)


def test_plugin_declared_secret_settings_are_vault_fields(tmp_path, home):
    from tradeguard import Engine

    with Engine.open(f"sqlite:///{tmp_path / 'tg.db'}", home=home, load_entrypoints=False, master_key=RAW_KEY,
                     plugins=[vault_test_plugin]) as eng:
        eng.accounts.add("v", "vaultvenue")
        eng.accounts.add("p", "paper")
        assert eng.vault.default_fields("v") == ["api_key", "api_secret", "trading_pin"]
        assert eng.vault.default_fields("p") == ["api_key", "api_secret"]
        eng.vault.set_credentials("v", {"trading_pin": "pin-pin-pin-pin-1234"})
        with pytest.raises(ValidationError, match="'trading_pin' is not used by 'paper'"):
            eng.vault.set_credentials("p", {"trading_pin": "pin-pin-pin-pin-1234"})
        assert dict(eng.exchange_for("v").config.secrets) == {"trading_pin": "pin-pin-pin-pin-1234"}
        assert "region" not in eng.vault.allowed_fields("v")  # a plain setting is not a secret field


def test_a_tampered_or_swapped_wrapped_key_is_an_integrity_error(tmp_path, home):
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    open_engine(url, home).close()
    with open_engine(url, home, master_key=None) as eng:
        (cred,), (audit_row,) = (sql(eng, f"SELECT key_id, wrapped FROM vault_key WHERE purpose = '{p}'")
                                 for p in ("credentials", "audit"))
        sql(eng, "UPDATE vault_key SET wrapped = ? WHERE key_id = ?", (audit_row[1], cred[0]))  # the audit key, moved
    with pytest.raises(IntegrityError, match=f"vault key {cred[0]} does not unwrap"):
        open_engine(url, home)
