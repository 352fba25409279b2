"""``tradeguard creds`` and master key handling at the CLI, including a
rotation killed midway in a real subprocess and finished by a rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vault_test_plugin
from tradeguard import WrongMasterKey

from vault_helpers import OTHER_KEY, PASSPHRASE, RAW_KEY_TEXT, open_engine, rows, sql

import base64

OTHER_KEY_TEXT = "base64:" + base64.b64encode(OTHER_KEY).decode()
KEY_ENV = {"TRADEGUARD_MASTER_KEY": RAW_KEY_TEXT}
API_KEY = "AKIAIOSFODNN7EXAMPLEKEY"
API_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def main_account(cli):
    assert cli("account", "add", "main", "--exchange", "paper").exit_code == 0
    return cli


def _count(cli, table: str) -> int:
    from tradeguard import Engine

    with Engine.open(cli.db_url, home=cli.home, load_entrypoints=False) as eng:
        return sql(eng, f"SELECT COUNT(*) FROM {table}")[0][0]


def test_set_from_stdin_and_check_prints_masked_values(main_account):
    cli = main_account
    result = cli("creds", "set", "main", "--stdin", input=f"api_key={API_KEY}\napi_secret={API_SECRET}\n", env=KEY_ENV)
    assert result.exit_code == 0, result.output
    assert "stored api_key, api_secret for account main" in result.stdout
    check = cli("creds", "check", "main", env=KEY_ENV)
    assert check.exit_code == 0, check.output
    assert "AKIA…EKEY" in check.stdout and "wJal…EKEY" in check.stdout
    assert API_KEY not in check.output and API_SECRET not in check.output
    assert "decrypt-only" in check.stdout
    data = cli.json("creds", "check", "main", env=KEY_ENV)
    assert data["fields"] == {"api_key": "AKIA…EKEY", "api_secret": "wJal…EKEY"} and data["venue_check"] == "skipped"


def test_set_one_field_from_stdin_and_from_env(main_account):
    cli = main_account
    assert cli("creds", "set", "main", "api_key", "--stdin", input=API_KEY + "\n", env=KEY_ENV).exit_code == 0
    env = {**KEY_ENV, "MY_SECRET": API_SECRET}
    assert cli("creds", "set", "main", "api_secret", "--from-env", "MY_SECRET", env=env).exit_code == 0
    both = cli("creds", "set", "main", "--from-env", "api_key=MY_SECRET", "--from-env", "api_secret=MY_SECRET", env=env)
    assert both.exit_code == 0, both.output
    assert cli.json("creds", "check", "main", env=KEY_ENV)["fields"]["api_key"] == "wJal…EKEY"


@pytest.mark.parametrize("args,stdin,env,message", [
    (("creds", "set", "main", "api_key"), None, {}, "no terminal"),
    (("creds", "set", "main", "api_key", "--from-env", "NOPE_UNSET"), None, {}, "NOPE_UNSET is not set"),
    (("creds", "set", "main", "--stdin"), "just-a-value\n", {}, "expected FIELD=VALUE"),
    (("creds", "set", "main", "bogus_field", "--stdin"), "value-value-value\n", {}, "not used by 'paper'"),
    (("creds", "set", "main", "api_key", "--stdin"), "\n", {}, "empty"),
    (("creds", "set", "nobody", "--stdin"), "api_key=x\n", {}, "no account named 'nobody'"),
    (("creds", "set", "main", "--stdin", "--from-env", "X"), "", {}, "not both"),
    (("creds", "remove", "main"), None, {}, "no stored credentials"),
    (("creds", "rotate-key", "--keep-master-key"), None, {}, "only makes sense with --data-keys"),
])
def test_bad_input_exits_2_and_changes_nothing(main_account, args, stdin, env, message):
    cli = main_account
    assert cli("account", "list", env=KEY_ENV).exit_code == 0  # the first key given creates the vault
    before = _count(cli, "audit_log"), _count(cli, "credential")
    result = cli(*args, input=stdin, env={**KEY_ENV, **env})
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (_count(cli, "audit_log"), _count(cli, "credential")) == before


def test_commands_needing_a_secret_say_the_vault_is_locked(main_account):
    cli = main_account
    cli("creds", "set", "main", "--stdin", input=f"api_key={API_KEY}\napi_secret={API_SECRET}\n", env=KEY_ENV)
    for args in (("creds", "check", "main"), ("creds", "set", "main", "api_key", "--stdin")):
        result = cli(*args, input="x" * 20)
        assert result.exit_code == 2 and "needs the master key" in result.stderr
    assert cli("account", "list").exit_code == 0  # no secret needed
    assert cli("audit", "verify").exit_code == 0


def test_wrong_master_key_exits_2_and_is_audited(main_account):
    cli = main_account
    cli("creds", "set", "main", "--stdin", input=f"api_key={API_KEY}\napi_secret={API_SECRET}\n", env=KEY_ENV)
    result = cli("creds", "check", "main", env={"TRADEGUARD_MASTER_KEY": OTHER_KEY_TEXT})
    assert result.exit_code == 2 and result.stderr.strip() == "error: wrong master key: it does not open this installation's vault"
    lines = cli("audit", "export", "--action", "vault.unlock_failed").stdout.splitlines()
    assert len(lines) == 1


def test_master_key_file_option_and_setting(main_account, tmp_path):
    cli = main_account
    key_file = tmp_path / "master.key"
    created = cli("creds", "init-key-file", str(key_file))
    assert created.exit_code == 0 and key_file.stat().st_mode & 0o777 == 0o600
    assert cli("creds", "init-key-file", str(key_file)).exit_code == 2  # never overwrites
    result = cli("--master-key-file", str(key_file), "creds", "set", "main", "api_key", "--stdin", input=API_KEY)
    assert result.exit_code == 0, result.output
    env = {"TRADEGUARD_MASTER_KEY_FILE": str(key_file)}
    assert cli.json("creds", "check", "main", env=env)["fields"] == {"api_key": "AKIA…EKEY"}
    assert cli("creds", "check", "main", env=KEY_ENV).exit_code == 2  # a different key


def test_remove_deletes_and_audits(main_account):
    cli = main_account
    cli("creds", "set", "main", "--stdin", input=f"api_key={API_KEY}\napi_secret={API_SECRET}\n", env=KEY_ENV)
    assert cli.json("creds", "remove", "main", "api_secret")["removed"] == ["api_secret"]
    assert cli("creds", "remove", "main", "api_secret").exit_code == 2
    assert cli.json("creds", "remove", "main")["removed"] == ["api_key"]
    assert _count(cli, "credential") == 0
    actions = [json.loads(line)["action"] for line in cli("audit", "export", "--action", "credential.*").stdout.splitlines()]
    assert actions == ["credential.set", "credential.remove", "credential.remove"]


def test_status_shows_keys_without_the_master_key(main_account):
    cli = main_account
    assert "not initialised" in cli("creds", "status").stdout
    cli("creds", "set", "main", "api_key", "--stdin", input=API_KEY, env=KEY_ENV)
    status = cli.json("creds", "status")
    assert status["initialised"] and status["locked"] and status["kdf"] is None
    assert sorted(k["purpose"] for k in status["data_keys"]) == ["audit", "backup", "credentials"]


def test_check_calls_the_venue_with_the_decrypted_key(home, tmp_path, monkeypatch):
    monkeypatch.setattr("tradeguard.plugin_manager.DEFAULT_PLUGINS",
                        (*__import__("tradeguard.plugin_manager").plugin_manager.DEFAULT_PLUGINS, "vault_test_plugin"))
    from conftest import Cli

    cli = Cli(home, f"sqlite:///{tmp_path / 'tg.db'}")
    assert cli("account", "add", "v", "--exchange", "vaultvenue").exit_code == 0
    stdin = f"api_key={vault_test_plugin.GOOD_KEY}\napi_secret=some-secret-value-0000\n"
    assert cli("creds", "set", "v", "--stdin", input=stdin, env=KEY_ENV).exit_code == 0
    good = cli.json("creds", "check", "v", env=KEY_ENV)
    assert good["venue_check"] == "ok" and good["fields"]["api_key"] == "GOOD…cdef"
    assert cli.json("account", "show", "v")["credentials_verified"] is True
    assert cli("creds", "set", "v", "api_key", "--stdin", input="BADKEY-0000000000000000", env=KEY_ENV).exit_code == 0
    bad = cli("creds", "check", "v", env=KEY_ENV)
    assert bad.exit_code == 1 and "refused the credentials" in bad.stderr
    assert cli.json("account", "show", "v")["credentials_verified"] is False


# -- rotation, interrupted --------------------------------------------------------------------


def _tradeguard(home: Path, url: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TRADEGUARD_HOME": str(home), "TRADEGUARD_DATABASE_URL": url,
                "TRADEGUARD_DISABLE_PLUGINS": "1", **env}
    for name in ("TRADEGUARD_TEST_CRASH_AT",):
        if name not in env:
            full_env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "tradeguard.cli", *args], env=full_env, capture_output=True,
                          text=True, timeout=120)


def test_rotation_killed_midway_keeps_every_secret_readable_and_a_rerun_finishes(tmp_path, home):
    url = f"sqlite:///{tmp_path / 'tg.db'}"
    secrets = {}
    with open_engine(url, home, master_key=PASSPHRASE) as eng:
        for index in range(4):
            name = f"acct{index}"
            eng.accounts.add(name, "paper")
            secrets[name] = {"api_key": f"key-{index}-" + "k" * 16, "api_secret": f"secret-{index}-" + "s" * 16}
            eng.vault.set_credentials(name, secrets[name])
        (old_key_id,) = eng.vault.status()["credential_key_ids"]
    env = {"TRADEGUARD_MASTER_KEY": PASSPHRASE, "TRADEGUARD_NEW_MASTER_KEY": "the new passphrase 2"}

    killed = _tradeguard(home, url, "creds", "rotate-key", "--data-keys",
                         env={**env, "TRADEGUARD_TEST_CRASH_AT": "rotate-after-2"})
    assert killed.returncode == -9, killed.stderr

    with open_engine(url, home, master_key=PASSPHRASE) as eng:  # the master key did not change yet
        in_use = eng.vault.status()["credential_key_ids"]
        assert len(in_use) == 2 and old_key_id in in_use  # both keys in use
        for name, values in secrets.items():
            assert dict(eng.vault.secrets_for(name, purpose="test")) == values

    rerun = _tradeguard(home, url, "creds", "rotate-key", "--data-keys", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished the interrupted rotation: 6 secrets re-encrypted" in rerun.stdout

    with pytest.raises(WrongMasterKey):
        open_engine(url, home, master_key=PASSPHRASE)
    with open_engine(url, home, master_key="the new passphrase 2") as eng:
        status = eng.vault.status()
        (new_key_id,) = status["credential_key_ids"]  # one key in use
        assert new_key_id != old_key_id
        assert old_key_id in [k["key_id"] for k in status["data_keys"] if k["retired_at"]]
        for name, values in secrets.items():
            assert dict(eng.vault.secrets_for(name, purpose="test")) == values
        report = eng.audit.verify(record=False)  # seals under the old and new audit keys
        assert report.ok and report.sealed_through == report.last_seq
        reencrypted = [e for e in rows(eng) if e["action"] == "credential.reencrypt"]
        assert len(reencrypted) == 8


def test_rotate_key_cli_with_new_key_file_and_keep_master(main_account, tmp_path):
    cli = main_account
    cli("creds", "set", "main", "--stdin", input=f"api_key={API_KEY}\napi_secret={API_SECRET}\n", env=KEY_ENV)
    assert cli("creds", "rotate-key", env=KEY_ENV).exit_code == 2  # no new key given, no terminal
    kept = cli.json("creds", "rotate-key", "--data-keys", "--keep-master-key", env=KEY_ENV)
    assert kept["reencrypted"] == 2 and "master_key_id" not in kept
    key_file = tmp_path / "new.key"
    cli("creds", "init-key-file", str(key_file))
    moved = cli("creds", "rotate-key", "--new-key-file", str(key_file), env=KEY_ENV)
    assert moved.exit_code == 0 and "3 data keys re-wrapped" not in moved.stdout  # 6: three retired, three active
    assert "6 data keys re-wrapped" in moved.stdout
    assert cli("creds", "check", "main", env=KEY_ENV).exit_code == 2
    assert cli("--master-key-file", str(key_file), "creds", "check", "main").exit_code == 0
