"""The backup pipeline, independent of an open Engine.

create: snapshot -> (read + SHA-256) -> zstd -> AES-256-GCM STREAM -> target,
each stage in its own thread with bounded queues between them, so memory is
flat and the stages overlap. extract: target -> authenticate every chunk ->
zstd -> file, checking the manifest, both hashes and all sizes. Everything
here works with only a target and the master key: the database may be gone.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import zstandard

from tradeguard.backup.compress import IterReader, compress, decompress, threaded
from tradeguard.backup.keys import BackupKey, unwrap_backup_key
from tradeguard.backup.manifest import (
    DATA_SUFFIX,
    MANIFEST_SUFFIX,
    ID_PATTERN,
    Manifest,
    data_name,
    header_digest_hex,
    manifest_name,
    open_manifest,
    seal_manifest,
)
from tradeguard.backup.snapshot import SnapshotInfo
from tradeguard.backup.stream import CHUNK_SIZE, Header, decrypt_stream, encrypt_stream
from tradeguard.clock import isoformat, utcnow
from tradeguard.errors import IntegrityError, NotFound, TradeguardError, ValidationError, WrongMasterKey

#: ``progress(phase, done_bytes, total_bytes_or_None)``
Progress = Callable[[str, int, "int | None"], None]


def new_backup_id() -> str:
    """``tg-YYYYMMDDTHHMMSSZ-xxxxxxxx``: sorts by creation time."""
    return f"tg-{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


WORK_PREFIX = ".tradeguard-backup-"


@contextmanager
def work_dir(near: Path) -> Iterator[Path]:
    """A private (0700) scratch directory in *near*, removed afterwards.

    Its name carries the process id, so scratch directories a killed process
    left behind (they may hold a plaintext snapshot) are removed by the next run.
    """
    near.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_work_dirs(near)
    path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=near))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_work_dirs(near: Path) -> list[Path]:
    """Delete scratch directories in *near* whose process is gone."""
    removed = []
    for path in near.glob(f"{WORK_PREFIX}*"):
        try:
            pid = int(path.name[len(WORK_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Counter:
    """Counts and hashes the bytes that pass through it."""

    def __init__(self, progress: Progress | None = None, phase: str = "", total: int | None = None):
        self.size = 0
        self.sha = hashlib.sha256()
        self.progress = progress
        self.phase = phase
        self.total = total

    def __call__(self, block: bytes) -> None:
        self.sha.update(block)
        self.size += len(block)
        if self.progress is not None:
            self.progress(self.phase, self.size, self.total)

    def wrap(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self(piece)
            yield piece


class _HashingReader(io.RawIOBase):
    """A reader that hashes and counts what is read through it."""

    def __init__(self, inner: IO[bytes], counter: _Counter):
        self.inner = inner
        self.counter = counter

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = self.inner.read(size)
        if data:
            self.counter(data)
        return data

    def readinto(self, target) -> int:  # type: ignore[override]
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


@dataclass(frozen=True)
class Source:
    """A snapshot to back up: its bytes, what was read inside it, its total size if known."""

    pieces: Iterable[bytes]
    info: SnapshotInfo
    db_kind: str
    size: int | None = None


def write_backup(
    target: Any,
    key: BackupKey,
    source: Source,
    *,
    tradeguard_version: str,
    source_url: str,
    reason: str = "manual",
    backup_id: str | None = None,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Manifest:
    """Compress, encrypt and store *source* on *target*; the manifest goes last."""
    from tradeguard.vault import crash_point

    backup_id = backup_id or new_backup_id()
    created_at = isoformat(utcnow())
    salt = os.urandom(32)
    data_header = Header(backup_id, "data", key.key_id, key.wrapped_key, key.kdf_params, salt, created_at, chunk_size)
    plain = _Counter(progress, "backup", source.size)
    packed = _Counter()
    stored = _Counter()
    chunks = [0]

    def sealed() -> Iterator[bytes]:
        for piece in encrypt_stream(key.key, data_header, packed.wrap(threaded(compress(threaded(plain.wrap(source.pieces)))))):
            chunks[0] += 1
            yield piece

    try:
        target.put(data_name(backup_id), IterReader(stored.wrap(threaded(sealed()))))
        manifest = Manifest(
            backup_id=backup_id,
            tradeguard_version=tradeguard_version,
            db_kind=source.db_kind,
            schema_version=source.info.schema_version,
            created_at=created_at,
            reason=reason,
            source=source_url,
            snapshot_size=plain.size,
            snapshot_sha256=plain.sha.hexdigest(),
            compressed_size=packed.size,
            data_size=stored.size,
            data_sha256=stored.sha.hexdigest(),
            data_header_sha256=header_digest_hex(data_header.encode()),
            chunks=chunks[0] - 1,
            audit_seq=source.info.audit_seq,
            audit_head=source.info.audit_head,
        )
        crash_point("backup-before-manifest")  # tests: SIGKILL between the data and the manifest
        manifest_header = Header(backup_id, "manifest", key.key_id, key.wrapped_key, key.kdf_params, salt, created_at)
        target.put(manifest_name(backup_id), io.BytesIO(seal_manifest(key.key, manifest_header, manifest)))
    except BaseException:
        _forget(target, data_name(backup_id))
        raise
    return manifest


def _forget(target: Any, name: str) -> None:
    try:
        target.delete(name)
    except Exception:
        pass


# -- reading ------------------------------------------------------------------------------


def _get(target: Any, name: str) -> IO[bytes]:
    try:
        return target.get(name)
    except NotFound:
        raise
    except TradeguardError:
        raise
    except Exception as exc:
        raise TradeguardError(f"cannot read {name} from {target.url}: {exc}".splitlines()[0]) from None


def resolve_id(target: Any, backup_id: str) -> str:
    """The full id of a backup on *target* from its id or a unique prefix of it."""
    ids = sorted({n[: -len(MANIFEST_SUFFIX)] for n in target.list() if n.endswith(MANIFEST_SUFFIX)})
    if backup_id in ids:
        return backup_id
    matches = [i for i in ids if i.startswith(backup_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no backup {backup_id} in {target.url}")
    raise ValidationError(f"backup id {backup_id} is ambiguous: {', '.join(matches[:5])}")


@dataclass(frozen=True)
class Opened:
    """A backup whose manifest was authenticated: its manifest, header and data key."""

    manifest: Manifest
    header: Header
    data_key: bytes


def open_backup(target: Any, backup_id: str, master_key: Any) -> Opened:
    """Read and authenticate the manifest of *backup_id* with the master key material."""
    with _get(target, manifest_name(backup_id)) as stream:
        header, _ = Header.read(stream, f"backup {backup_id} manifest")
        try:
            data_key = unwrap_backup_key(header.key_id, header.wrapped_key, header.kdf, master_key)
        except WrongMasterKey:
            _refuse_if_headers_disagree(target, backup_id, header)
            raise
        manifest = open_manifest(data_key, header, stream, backup_id)
    return Opened(manifest, header, data_key)


def _refuse_if_headers_disagree(target: Any, backup_id: str, header: Header) -> None:
    """Tell an altered header from a wrong key: both objects of a backup carry the same key fields."""
    try:
        with _get(target, data_name(backup_id)) as stream:
            other, _ = Header.read(stream, f"backup {backup_id}")
    except NotFound:
        return
    if (other.key_id, other.wrapped_key, other.kdf, other.salt) != (header.key_id, header.wrapped_key, header.kdf, header.salt):
        raise IntegrityError(f"backup {backup_id}: the manifest and data headers disagree (altered)")


def read_header(target: Any, backup_id: str) -> Header:
    """The (not yet authenticated) header of a backup's manifest: listable without the key."""
    with _get(target, manifest_name(backup_id)) as stream:
        header, _ = Header.read(stream, f"backup {backup_id} manifest")
    return header


def extract(target: Any, opened: Opened, dest: Path, progress: Progress | None = None) -> None:
    """Decrypt, authenticate and decompress the backup's snapshot into the new file *dest* (0600).

    Raises IntegrityError on any altered, missing, reordered or foreign byte; *dest*
    is removed then.
    """
    manifest = opened.manifest
    backup_id = manifest.backup_id
    what = f"backup {backup_id}"
    stored = _Counter(progress, "verify", manifest.data_size)
    plain = _Counter()
    try:
        with _get(target, data_name(backup_id)) as raw:
            stream = _HashingReader(raw, stored)
            header, raw_header = Header.read(stream, what)
            if header.part != "data" or header.backup_id != backup_id:
                raise IntegrityError(f"{what}: the data object belongs to backup {header.backup_id} (swapped)")
            if header_digest_hex(raw_header) != manifest.data_header_sha256 or (
                header.key_id, header.wrapped_key, header.salt, header.created_at
            ) != (opened.header.key_id, opened.header.wrapped_key, opened.header.salt, opened.header.created_at):
                raise IntegrityError(f"{what}: the manifest does not belong to this data (swapped manifest)")
            fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "wb") as out:
                try:
                    for block in threaded(decompress(threaded(decrypt_stream(opened.data_key, header, stream, what)))):
                        plain(block)
                        out.write(block)
                except zstandard.ZstdError as exc:
                    raise IntegrityError(f"{what}: the decrypted data does not decompress: {exc}") from None
                out.flush()
                os.fsync(out.fileno())
        if stored.size != manifest.data_size or stored.sha.hexdigest() != manifest.data_sha256:
            raise IntegrityError(f"{what}: the data object differs from the one the manifest records")
        if plain.size != manifest.snapshot_size or plain.sha.hexdigest() != manifest.snapshot_sha256:
            raise IntegrityError(f"{what}: the snapshot's SHA-256 differs from the manifest's")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


# -- listing ------------------------------------------------------------------------------


def list_backups(target: Any, master_key: Any = None) -> list[dict[str, Any]]:
    """Every backup on *target*, newest first, read from the target alone.

    ``status`` is ``complete`` (manifest and data present; ``ok`` once the
    manifest authenticated with *master_key*), ``incomplete`` (data without a
    manifest: an interrupted backup), ``missing-data`` or ``unreadable``.
    Only the manifest is read, never the data.
    """
    names = set(target.list())
    ids = {n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX)}
    orphans = {n[: -len(DATA_SUFFIX)] for n in names if n.endswith(DATA_SUFFIX)} - ids
    rows: list[dict[str, Any]] = []
    for backup_id in ids:
        if not ID_PATTERN.match(backup_id):
            continue
        row: dict[str, Any] = {"id": backup_id, "target": target.url, "created_at": None, "status": "complete"}
        try:
            if master_key is not None:
                opened = open_backup(target, backup_id, master_key)
                row.update(_manifest_row(opened.manifest))
                row["status"] = "ok"
            else:
                row["created_at"] = read_header(target, backup_id).created_at
        except IntegrityError as exc:
            row.update(status="unreadable", error=str(exc))
        if data_name(backup_id) not in names:
            row["status"] = "missing-data"
        rows.append(row)
    for backup_id in orphans:
        if ID_PATTERN.match(backup_id):
            rows.append({"id": backup_id, "target": target.url, "created_at": None, "status": "incomplete"})
    rows.sort(key=lambda r: (r["created_at"] or "", r["id"]), reverse=True)
    return rows


def _manifest_row(manifest: Manifest) -> dict[str, Any]:
    return {
        "created_at": manifest.created_at,
        "db_kind": manifest.db_kind,
        "schema_version": manifest.schema_version,
        "reason": manifest.reason,
        "snapshot_size": manifest.snapshot_size,
        "size": manifest.data_size,
        "snapshot_sha256": manifest.snapshot_sha256,
        "audit_seq": manifest.audit_seq,
        "audit_head": manifest.audit_head,
        "tradeguard_version": manifest.tradeguard_version,
    }


def manifest_row(manifest: Manifest) -> dict[str, Any]:
    """A JSON-ready summary of a manifest."""
    return {"id": manifest.backup_id, **_manifest_row(manifest)}
