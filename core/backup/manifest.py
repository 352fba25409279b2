"""The manifest: what a backup holds, encrypted and authenticated like its data.

A backup is two objects on its target: ``ID.tgb`` (the data) and ``ID.tgm``
(the manifest), the manifest written last, so a backup without a manifest is
incomplete by construction. Both start with a `Header` carrying the same
backup id, key and salt; the manifest records the SHA-256 of the data
object's header and of its whole ciphertext, so a manifest moved next to
another backup's data is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from tradeguard.backup.stream import Header, decrypt_stream, encrypt_stream
from tradeguard.errors import IntegrityError

DATA_SUFFIX = ".tgb"
MANIFEST_SUFFIX = ".tgm"
ID_PATTERN = re.compile(r"^tg-\d{8}T\d{6}Z-[0-9a-f]{6,32}$")
MAX_MANIFEST = 1 << 20


@dataclass(frozen=True)
class Manifest:
    """Everything recorded about one backup."""

    backup_id: str
    tradeguard_version: str
    db_kind: str
    schema_version: int
    created_at: str
    reason: str
    source: str
    snapshot_size: int
    snapshot_sha256: str
    compressed_size: int
    data_size: int
    data_sha256: str
    data_header_sha256: str
    chunks: int
    audit_seq: int | None
    audit_head: str | None
    format: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        names = {f.name for f in fields(cls)}
        missing = names - set(data) - {"format"}
        if missing:
            raise IntegrityError(f"manifest lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})


def data_name(backup_id: str) -> str:
    return backup_id + DATA_SUFFIX


def manifest_name(backup_id: str) -> str:
    return backup_id + MANIFEST_SUFFIX


def seal_manifest(data_key: bytes, header: Header, manifest: Manifest) -> bytes:
    """The manifest object's bytes: its header, then the manifest JSON in STREAM chunks."""
    body = json.dumps(manifest.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    return b"".join(encrypt_stream(data_key, header, [body]))


def open_manifest(data_key: bytes, header: Header, stream: io.RawIOBase | Any, backup_id: str) -> Manifest:
    """Decrypt and check the manifest read from *stream* (positioned after *header*)."""
    what = f"backup {backup_id} manifest"
    if header.part != "manifest":
        raise IntegrityError(f"{what}: the object is not a manifest")
    body = bytearray()
    for piece in decrypt_stream(data_key, header, stream, what):
        body += piece
        if len(body) > MAX_MANIFEST:
            raise IntegrityError(f"{what}: too large")
    try:
        manifest = Manifest.from_dict(json.loads(bytes(body)))
    except (ValueError, TypeError):
        raise IntegrityError(f"{what}: malformed") from None
    if manifest.backup_id != backup_id or header.backup_id != backup_id:
        raise IntegrityError(f"{what}: belongs to backup {manifest.backup_id} (swapped manifest)")
    return manifest


def header_digest_hex(raw_header: bytes) -> str:
    return hashlib.sha256(raw_header).hexdigest()
