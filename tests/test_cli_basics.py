"""CLI skeleton: version, init, config precedence, db seed/clear, database errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import tradeguard


def test_version(sqlite_cli):
    result = sqlite_cli("--version")
    assert result.exit_code == 0 and tradeguard.__version__ in result.stdout


def test_init_reports_profile_and_schema(sqlite_cli):
    data = sqlite_cli.json("init", "--profile", "test")
    assert data["profile"] == "test" and data["backend"] == "sqlite"
    assert sqlite_cli.json("init")["profile"] == "test"  # stored in the database, not re-defaulted


def test_config_precedence_cli_over_env_over_file_over_default(sqlite_cli):
    (sqlite_cli.home / "config.toml").write_text('log_format = "json"\nlog_level = "INFO"\nplugins = "a,b"\n')
    rows = {r["name"]: r for r in sqlite_cli.json("config", "show", env={"TRADEGUARD_LOG_LEVEL": "ERROR"})}
    assert rows["log_format"]["value"] == "json" and rows["log_format"]["source"] == "config.toml"
    assert rows["log_level"]["value"] == "ERROR" and rows["log_level"]["source"] == "env"
    assert rows["home"]["source"] == "env"
    assert rows["backup_target"]["source"] == "default"
    over = {r["name"]: r for r in sqlite_cli.json("--log-format", "text", "config", "show")}
    assert over["log_format"]["value"] == "text" and over["log_format"]["source"] == "cli"


def test_config_show_masks_secrets(sqlite_cli):
    out = sqlite_cli("config", "show", env={"TRADEGUARD_MASTER_KEY": "hunter2-very-secret"})
    assert out.exit_code == 0
    assert "hunter2" not in out.output and "********" in out.stdout


def test_config_show_masks_database_password(sqlite_cli):
    out = sqlite_cli("config", "show", env={"TRADEGUARD_DATABASE_URL": "postgresql://u:s3cretpw@localhost/db"})
    assert "s3cretpw" not in out.output


def test_malformed_config_file_is_bad_input(sqlite_cli):
    (sqlite_cli.home / "config.toml").write_text("log_format = [unclosed\n")
    result = sqlite_cli("account", "list")
    assert result.exit_code == 2 and "config.toml" in result.stderr


def test_unknown_config_key_is_bad_input(sqlite_cli):
    (sqlite_cli.home / "config.toml").write_text('log_fromat = "json"\n')
    result = sqlite_cli("account", "list")
    assert result.exit_code == 2 and "log_fromat" in result.stderr


@pytest.mark.parametrize("url", ["postgresql:///nohost", "postgresql://host:notaport/db", "ftp://x/y", "sqlite"])
def test_malformed_database_url_is_bad_input(sqlite_cli, url):
    result = sqlite_cli("--db", url, "account", "list")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_a_runtime_failure_naming_the_host(sqlite_cli):
    result = sqlite_cli("--db", "postgresql://tg@127.0.0.1:1/tradeguard?connect_timeout=2", "account", "list")
    assert result.exit_code == 1
    assert "127.0.0.1:1" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_password_never_in_error_output(sqlite_cli):
    result = sqlite_cli("--db", "postgresql://tg:topsecretpw@127.0.0.1:1/x?connect_timeout=2", "account", "list")
    assert result.exit_code == 1 and "topsecretpw" not in result.output


def test_seed_is_idempotent_and_refused_in_production(cli):
    assert cli.json("db", "seed")["created"] == "created"
    assert cli.json("db", "seed")["created"] == "already present"
    assert cli.json("db", "seed", "--force")["created"] == "created"
    assert len(cli.json("account", "list")) == 1
    cli.json("init", "--profile", "production")
    result = cli("db", "seed")
    assert result.exit_code == 2 and "production" in result.stderr


def test_clear_asks_unless_yes(cli):
    cli.json("db", "seed")
    assert cli("db", "clear", input="n\n").exit_code == 2
    assert len(cli.json("account", "list", "--archived")) == 1
    deleted = cli.json("db", "clear", "--yes")["deleted"]
    assert deleted["account"] == 1 and deleted["order"] == 3
    assert cli.json("account", "list", "--archived") == []


def test_json_logs_on_stderr(sqlite_cli):
    result = sqlite_cli("--log-format", "json", "--debug", "account", "list")
    assert result.exit_code == 0
    lines = [l for l in result.stderr.splitlines() if l.startswith("{")]
    assert lines and all("level" in json.loads(l) for l in lines)


def test_traceback_only_with_debug(sqlite_cli):
    quiet = sqlite_cli("--db", "ftp://x/y", "account", "list")
    assert "Traceback" not in quiet.stderr
    loud = sqlite_cli("--debug", "--db", "ftp://x/y", "account", "list")
    assert loud.exit_code == 2


def test_real_subprocess_exit_codes_and_stderr(tmp_path):
    env = {**os.environ, "TRADEGUARD_HOME": str(tmp_path / "h"), "TRADEGUARD_DISABLE_PLUGINS": "1"}
    env.pop("TRADEGUARD_DATABASE_URL", None)
    exe = [sys.executable, "-m", "tradeguard.cli"]
    ok = subprocess.run(exe + ["account", "add", "s", "--exchange", "paper"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(exe + ["account", "add", "s", "--exchange", "paper"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: an account named 's' already exists"
    assert oct((tmp_path / "h").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "h" / "tradeguard.db").stat().st_mode & 0o777) == "0o600"


def test_seed_books_agree_with_replay(cli):
    cli.json("db", "seed")
    result = cli("replay", "paper-demo")
    assert result.exit_code == 0, result.output
