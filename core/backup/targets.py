"""Backup target URLs: the default one, and opening a target through the plugin registry."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from tradeguard.errors import ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def default_target_url(settings: Any) -> str:
    """``backup_target`` from the settings, else ``file://HOME/backups``."""
    return settings.backup_target or f"file://{settings.home_path / 'backups'}"


def open_target(plugins: Any, url: str) -> Any:
    """The `BackupTarget` for *url*, from the plugin registered for its scheme."""
    scheme = urlparse(url).scheme
    if not scheme:
        raise ConfigError(f"backup target {url!r}: expected a URL such as file:///path or s3://bucket/prefix")
    registration = plugins.backup_targets.get(scheme)
    return registration.factory(url)


def check_name(name: str) -> str:
    """Refuse object names that could escape a target's directory or prefix."""
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"invalid backup object name {name!r}")
    return name
