"""No plaintext secret, passphrase or key anywhere it could leak.

Known secrets are stored and used through every CLI command and Engine method
that touches them, with logging at DEBUG (tradeguard's and peewee's SQL log);
then the database file and its WAL, the home directory, the log output, the
CLI output, exception messages and the repr/str of every object involved are
searched for each secret — raw, base64 and hex — and for the passphrases, the
derived master keys and the data keys.
"""

from __future__ import annotations

import base64
import io
import logging
import sqlite3
from pathlib import Path

import pytest

import vault_test_plugin
from tradeguard import Engine, TradeguardError
from tradeguard.vault.kdf import derive
from tradeguard.vault.keys import MasterRecord

from vault_helpers import sql

API_KEY = vault_test_plugin.GOOD_KEY
API_SECRET = "Zk9yZ2V0LW1lLW5vdC1zZWNyZXQtdmFsdWU-api-secret"
PRIVATE_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
PASSPHRASE = "leak test passphrase one"
NEW_PASSPHRASE = "leak test passphrase two"


def _forms(value: bytes) -> list[bytes]:
    forms = [value, value.hex().encode(), value.hex().upper().encode(), base64.b64encode(value),
             base64.urlsafe_b64encode(value), base64.b64encode(value).rstrip(b"=")]
    return forms


@pytest.fixture
def plugin_installed(monkeypatch):
    import tradeguard.plugin_manager as pm

    monkeypatch.setattr(pm, "DEFAULT_PLUGINS", (*pm.DEFAULT_PLUGINS, "vault_test_plugin"))


def test_no_secret_leaks_anywhere(tmp_path, home, plugin_installed):
    from conftest import Cli

    db_path = tmp_path / "tg.db"
    url = f"sqlite:///{db_path}"
    cli = Cli(home, url)
    outputs: list[str] = []
    exceptions: list[str] = []
    reprs: list[str] = []
    log_stream = io.StringIO()
    handler = logging.StreamHandler(log_stream)
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("", "tradeguard", "peewee")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    keep_wal = None
    try:
        old = {"TRADEGUARD_MASTER_KEY": PASSPHRASE}
        new = {"TRADEGUARD_MASTER_KEY": NEW_PASSPHRASE}

        def run(*args: str, env: dict | None = None, input: str | None = None, expect: int = 0) -> None:
            result = cli("--debug", *args, env=env, input=input)
            outputs.append(result.stdout + result.stderr)
            assert result.exit_code == expect, (args, result.output)

        run("init")
        keep_wal = sqlite3.connect(db_path)  # an open reader keeps the WAL file for the scan
        keep_wal.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        run("account", "add", "main", "--exchange", "vaultvenue")
        run("account", "add", "w", "--exchange", "paper")
        run("creds", "set", "main", "--stdin", input=f"api_key={API_KEY}\napi_secret={API_SECRET}\n", env=old)
        run("creds", "set", "w", "wallet_private_key", "--from-env", "PK", env={**old, "PK": PRIVATE_KEY})
        run("creds", "set", "main", "bogus", "--stdin", input=API_SECRET, env=old, expect=2)
        run("creds", "check", "main", env=old)
        run("creds", "check", "main", "--json", env=old)
        run("creds", "check", "w", env=old)
        run("creds", "check", "main", env={"TRADEGUARD_MASTER_KEY": "a wrong passphrase"}, expect=2)
        run("creds", "check", "main", expect=2)
        run("creds", "status", "--json")
        run("account", "show", "main", "--json")
        run("account", "list", "--json")
        run("config", "show", env=old)
        run("audit", "verify", env=old)
        run("audit", "tail", "-n", "50")
        run("audit", "export")
        run("creds", "rotate-key", "--data-keys", env={**old, "TRADEGUARD_NEW_MASTER_KEY": NEW_PASSPHRASE})
        run("creds", "check", "main", env=new)
        run("backup", "create", env=new)  # the backup files in HOME/backups are scanned below
        run("creds", "remove", "w")

        with Engine.open(url, home=home, load_entrypoints=False, master_key=NEW_PASSPHRASE) as eng:
            secrets = eng.vault.secrets_for("main", purpose="leak-test")
            adapter = eng.exchange_for("main")
            adapter.fetch_balance()
            backup_key = eng.vault.backup_key()
            reprs += [repr(o) + str(o) for o in (eng, eng.vault, eng.audit, secrets, eng.vault.provider_for("main"),
                                                 adapter.config, adapter.config.secrets, backup_key, eng.settings,
                                                 eng.vault._master, *eng.vault._keys.values())]
            reprs.append(repr(eng.vault.status()) + repr(eng.vault.check("main")) + repr(eng.audit.verify()))
            data_keys = [k.material for k in eng.vault._keys.values()]
            record_new = MasterRecord.from_dict(eng.get_setting("vault.master"))
            # a ciphertext copied to another account: the error must not carry the plaintext
            sql(eng, "UPDATE credential SET ciphertext = (SELECT ciphertext FROM credential LIMIT 1)")
            try:
                eng.vault.secrets_for("main", purpose="t")
            except TradeguardError as exc:
                exceptions.append(f"{exc!r} {exc}")
        for bad in ("a wrong passphrase", PASSPHRASE):
            try:
                Engine.open(url, home=home, load_entrypoints=False, master_key=bad)
            except TradeguardError as exc:
                exceptions.append(f"{exc!r} {exc}")
        with Engine.open(url, home=home, load_entrypoints=False) as eng:
            try:
                eng.vault.secrets_for("main", purpose="t")
            except TradeguardError as exc:
                exceptions.append(f"{exc!r} {exc}")
        assert len(exceptions) == 4

        master_new = derive(NEW_PASSPHRASE.encode(), record_new.kdf)
        files = {p: p.read_bytes() for p in [db_path, Path(f"{db_path}-wal"), *home.rglob("*")] if p.is_file()}
        assert Path(f"{db_path}-wal") in files
        assert any(p.suffix == ".tgb" for p in files), sorted(files)  # a backup was written and is scanned
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
        if keep_wal is not None:
            keep_wal.close()

    text_blobs = {"log output": log_stream.getvalue(), "CLI output": "\n".join(outputs),
                  "exception messages": "\n".join(exceptions), "reprs": "\n".join(reprs)}
    assert "credential" in text_blobs["log output"]  # peewee's SQL log was captured
    assert "AKIA" not in text_blobs["CLI output"] and "GOOD…cdef" in text_blobs["CLI output"]
    needles: dict[str, list[bytes]] = {}
    for name, value in [("api key", API_KEY), ("api secret", API_SECRET), ("private key", PRIVATE_KEY),
                        ("passphrase", PASSPHRASE), ("new passphrase", NEW_PASSPHRASE)]:
        needles[name] = _forms(value.encode())
    needles["derived master key"] = _forms(master_new)
    for index, key in enumerate(data_keys):
        needles[f"data key {index}"] = _forms(key)
    haystacks = {str(path): data for path, data in files.items()}
    haystacks.update({name: blob.encode("utf-8") for name, blob in text_blobs.items()})
    found = [(needle_name, where) for needle_name, forms in needles.items() for where, data in haystacks.items()
             if any(form in data for form in forms)]
    assert found == []
