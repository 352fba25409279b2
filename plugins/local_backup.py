"""Local-directory backup target (built-in plugin): ``file:///path/to/dir``.

Objects are files created 0600 in a 0700 directory, written under a
temporary dot-name, fsync'd, then renamed into place (and the directory
fsync'd), so a crash or SIGKILL never leaves a half-written object under its
final name. Listing ignores dot-files (temporary and partial writes).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import IO, Iterator
from urllib.parse import unquote, urlparse

from tradeguard.backup.targets import check_name
from tradeguard.errors import ConfigError, NotFound, TradeguardError
from tradeguard.hookspecs import hookimpl

TEMP_PREFIX = ".tmp-"
BLOCK = 4 << 20


class FileTarget:
    """Backups kept in one local directory."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ConfigError(f"backup target {url!r}: expected file:///ABSOLUTE/PATH")
        self.url = url
        self.path = Path(unquote(parsed.path))

    def __repr__(self) -> str:
        return f"FileTarget({self.url!r})"

    def _ensure_dir(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise TradeguardError(f"cannot create backup directory {self.path}: {exc.strerror}") from None

    def put(self, name: str, stream: IO[bytes]) -> int:
        """Write *stream* to a temporary file, fsync it, rename it to *name*; return its size."""
        check_name(name)
        self._ensure_dir()
        final = self.path / name
        temp = self.path / f"{TEMP_PREFIX}{name}.{secrets.token_hex(4)}"
        size = 0
        try:
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "wb") as out:
                while True:
                    block = stream.read(BLOCK)
                    if not block:
                        break
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._sync_dir()
        return size

    def get(self, name: str) -> IO[bytes]:
        check_name(name)
        try:
            return open(self.path / name, "rb")
        except FileNotFoundError:
            raise NotFound(f"no object {name} in {self.url}") from None

    def list(self) -> Iterator[str]:
        """Names of complete objects (temporary files are skipped)."""
        try:
            entries = sorted(os.scandir(self.path), key=lambda e: e.name)
        except FileNotFoundError:
            return iter(())
        return iter([e.name for e in entries if not e.name.startswith(".") and e.is_file(follow_symlinks=False)])

    def delete(self, name: str) -> None:
        check_name(name)
        try:
            (self.path / name).unlink()
        except FileNotFoundError:
            raise NotFound(f"no object {name} in {self.url}") from None
        self._sync_dir()

    def size(self, name: str) -> int:
        """Size of an object in bytes (optional target method)."""
        try:
            return (self.path / name).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no object {name} in {self.url}") from None

    def remove_partials(self, older_than: float = 3600.0) -> list[str]:
        """Delete temporary files left by interrupted writes older than *older_than* seconds."""
        removed = []
        cutoff = time.time() - older_than
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return removed
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)
                removed.append(entry.name)
        return removed

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@hookimpl
def register_backup_targets(register):
    """The ``file`` scheme: a local directory."""
    register("file", FileTarget)
