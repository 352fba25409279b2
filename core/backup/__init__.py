"""Encrypted, authenticated, verifiable backups (invariant 7 of the design).

snapshot (SQLite online backup / pg_dump) -> zstd -> AES-256-GCM STREAM ->
a pluggable target; a manifest per backup; verify and restore from the
target and the master key alone. See docs/backups.md.
"""

from tradeguard.backup.service import Backups, restore_to

__all__ = ["Backups", "restore_to"]
