"""Local-directory backup target (built-in plugin)."""

from __future__ import annotations

from tradeguard.hookspecs import hookimpl


@hookimpl
def register_backup_targets(register):
    """Registered by the backups work."""
