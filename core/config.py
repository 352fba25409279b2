"""Settings: command-line options over ``TRADEGUARD_*`` environment variables
over ``config.toml`` in the home over defaults. Each value remembers where it
came from, so ``tradeguard config show`` can say.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tradeguard.errors import ConfigError

ENV_PREFIX = "TRADEGUARD_"


@dataclass(frozen=True)
class Option:
    """One setting: its name, default, whether it is secret, and what it does."""

    name: str
    default: Any
    help: str
    secret: bool = False


OPTIONS: tuple[Option, ...] = (
    Option("home", "~/.tradeguard", "directory holding the database, config.toml and key files"),
    Option("database_url", None, "database URL; default sqlite:///HOME/tradeguard.db"),
    Option("log_format", "text", "stderr log format: text or json"),
    Option("log_level", "WARNING", "stderr log level"),
    Option("plugins", None, "comma list: load only these third-party (entry-point) plugins"),
    Option("disable_plugins", False, "true: load no third-party plugins at all"),
    Option("master_key", None, "master passphrase (or base64:KEY) — prefer a prompt or key file", secret=True),
    Option("master_key_file", None, "path of a 32-byte master key file"),
    Option("backup_target", None, "default backup target URL; default file://HOME/backups"),
    # operations (docs/operations.md): `tradeguard doctor` thresholds and `tradeguard db prune` retention
    Option("doctor_max_sync_age", "1h", "doctor: warn (fail for LIVE accounts) when an account's last good sync is older"),
    Option("doctor_max_backup_age", "26h", "doctor: warn (fail on a production profile) when the last backup is older"),
    Option("doctor_pending_submit_age", "5m", "doctor: fail on orders stuck in PENDING_SUBMIT for longer"),
    Option("doctor_max_wal_mb", "256", "doctor: warn when the SQLite WAL file is larger (MB)"),
    Option("retention_sync_log", "90d", "db prune: keep sync logs this long"),
    Option("retention_balance_snapshot", "90d", "db prune: keep balance snapshots this long"),
    Option("retention_position_snapshot", "90d", "db prune: keep position snapshots this long"),
)
_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Value:
    value: Any
    source: str  # "cli", "env", "config.toml", "default"


@dataclass
class Settings:
    """Effective settings with their sources."""

    values: dict[str, Value] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name].value
        except KeyError:
            raise AttributeError(name) from None

    @property
    def home_path(self) -> Path:
        return Path(os.path.expanduser(str(self.home)))

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_path / 'tradeguard.db'}"

    def show(self) -> list[dict[str, Any]]:
        """Rows for `config show`, secrets masked."""
        rows = []
        for option in OPTIONS:
            entry = self.values[option.name]
            value = entry.value
            if option.secret and value:
                value = "********"
            if option.name == "database_url":
                from tradeguard.storage import redact_url

                value = redact_url(self.effective_database_url)
            rows.append({"name": option.name, "value": value, "source": entry.source, "help": option.help})
        return rows

    def __repr__(self) -> str:
        shown = {r["name"]: r["value"] for r in self.show()}
        return f"Settings({shown!r})"


def _coerce(option: Option, raw: Any) -> Any:
    if isinstance(option.default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{option.name}: expected true or false, got {raw!r}")
    if option.name == "log_format" and raw not in ("text", "json"):
        raise ConfigError(f"log_format: expected text or json, got {raw!r}")
    return raw


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Resolve every option from *cli* (None values ignored), *env* and the config file."""
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    env = os.environ if env is None else env

    def env_value(name: str) -> Any:
        return env.get(ENV_PREFIX + name.upper())

    home = cli.get("home") or env_value("home") or _BY_NAME["home"].default
    path = Path(config_file) if config_file else Path(os.path.expanduser(home)) / "config.toml"
    file_values: dict[str, Any] = {}
    if path.exists():
        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        unknown = sorted(set(file_values) - set(_BY_NAME))
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    elif config_file:
        raise ConfigError(f"config file {path} does not exist")

    settings = Settings()
    for option in OPTIONS:
        if option.name in cli:
            entry = Value(_coerce(option, cli[option.name]), "cli")
        elif env_value(option.name) is not None:
            entry = Value(_coerce(option, env_value(option.name)), "env")
        elif option.name in file_values:
            entry = Value(_coerce(option, file_values[option.name]), "config.toml")
        else:
            entry = Value(option.default, "default")
        settings.values[option.name] = entry
    return settings
