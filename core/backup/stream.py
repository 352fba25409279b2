"""Chunked AES-256-GCM in the style of age's STREAM construction.

A backup object is ``header || chunk_0 || … || chunk_n``. The header (magic,
format version, then canonical JSON) is authenticated, not secret: it carries
the backup id, the key id, the wrapped backup data key and the master key's
KDF salt and parameters. Every backup gets its own payload key,
``HKDF-SHA256(data_key, salt=header.salt, info=purpose)``, so chunk nonces
never repeat across backups.

Each chunk holds ``chunk_size`` plaintext bytes (the last one 1..chunk_size,
or 0 for an empty stream) plus a 16-byte tag. Its nonce is
``counter (11 bytes, big endian) || last-chunk flag (1 byte)`` and its
associated data is the SHA-256 of the header, so:

* reordering, dropping or swapping chunks breaks the counter;
* truncation at a chunk boundary breaks the final flag;
* any change to the header breaks every chunk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tradeguard.errors import IntegrityError

MAGIC = b"TGBACKUP"
FORMAT_VERSION = 1
CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
MAX_HEADER = 64 * 1024
_COUNTER_LIMIT = 1 << 88


@dataclass(frozen=True)
class Header:
    """The authenticated, unencrypted start of every backup object."""

    backup_id: str
    part: str  # "data" or "manifest"
    key_id: str
    wrapped_key: bytes = field(repr=False)
    kdf: dict[str, Any]
    salt: bytes
    created_at: str
    chunk_size: int = CHUNK_SIZE
    compression: str = "zstd"
    format: int = FORMAT_VERSION

    def encode(self) -> bytes:
        """The header's exact bytes: magic, version byte, length, canonical JSON."""
        body = json.dumps(
            {
                "backup_id": self.backup_id,
                "part": self.part,
                "key_id": self.key_id,
                "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
                "kdf": self.kdf,
                "salt": base64.b64encode(self.salt).decode(),
                "created_at": self.created_at,
                "chunk_size": self.chunk_size,
                "compression": self.compression,
                "cipher": "AES-256-GCM-STREAM",
                "format": self.format,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        return MAGIC + bytes([self.format]) + struct.pack(">I", len(body)) + body

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def read(cls, stream: IO[bytes], what: str = "backup") -> tuple["Header", bytes]:
        """Parse a header from *stream*; returns it and its raw bytes. IntegrityError if malformed."""
        prefix = read_exact(stream, len(MAGIC) + 5)
        if len(prefix) < len(MAGIC) + 5 or prefix[: len(MAGIC)] != MAGIC:
            raise IntegrityError(f"{what}: not a tradeguard backup (bad magic)")
        version = prefix[len(MAGIC)]
        if version != FORMAT_VERSION:
            raise IntegrityError(f"{what}: backup format {version} is not supported by this tradeguard (knows {FORMAT_VERSION})")
        (length,) = struct.unpack(">I", prefix[len(MAGIC) + 1 :])
        if length > MAX_HEADER:
            raise IntegrityError(f"{what}: header too large ({length} bytes)")
        body = read_exact(stream, length)
        if len(body) != length:
            raise IntegrityError(f"{what}: truncated header")
        try:
            data = json.loads(body)
            header = cls(
                backup_id=str(data["backup_id"]),
                part=str(data["part"]),
                key_id=str(data["key_id"]),
                wrapped_key=base64.b64decode(data["wrapped_key"], validate=True),
                kdf=dict(data["kdf"]),
                salt=base64.b64decode(data["salt"], validate=True),
                created_at=str(data["created_at"]),
                chunk_size=int(data["chunk_size"]),
                compression=str(data["compression"]),
                format=int(data["format"]),
            )
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{what}: malformed header") from None
        raw = prefix + body
        if header.encode() != raw or not (1024 <= header.chunk_size <= 16 << 20) or header.format != version:
            raise IntegrityError(f"{what}: header is not in canonical form (altered)")
        return header, raw


def payload_key(data_key: bytes, header: Header) -> bytes:
    """The key for this object's chunks, unique per backup and per part."""
    info = b"tradeguard backup v1 " + header.part.encode()
    return HKDF(hashes.SHA256(), 32, header.salt, info).derive(data_key)


def nonce(counter: int, last: bool) -> bytes:
    """STREAM nonce: 11-byte big-endian chunk counter, then 1 if this is the final chunk."""
    if counter >= _COUNTER_LIMIT:
        raise OverflowError("too many chunks")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def read_exact(stream: IO[bytes], size: int) -> bytes:
    """Read up to *size* bytes, looping over short reads; fewer only at end of stream."""
    parts = []
    remaining = size
    while remaining > 0:
        piece = stream.read(remaining)
        if not piece:
            break
        parts.append(piece)
        remaining -= len(piece)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def encrypt_stream(data_key: bytes, header: Header, plaintext: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the header, then the sealed chunks of *plaintext* (pieces of any size)."""
    aead = AESGCM(payload_key(data_key, header))
    aad = header.digest
    size = header.chunk_size
    yield header.encode()
    buffer = bytearray()
    counter = 0
    for piece in plaintext:
        buffer += piece
        # Emit only when more than a chunk is buffered: the final chunk is never empty
        # (unless the whole stream is), so "last" is known when it is sealed.
        while len(buffer) > size:
            with memoryview(buffer) as view:  # no copy of the plaintext
                sealed = aead.encrypt(nonce(counter, False), view[:size], aad)
            del buffer[:size]
            counter += 1
            yield sealed
    yield aead.encrypt(nonce(counter, True), bytes(buffer), aad)


def decrypt_stream(data_key: bytes, header: Header, stream: IO[bytes], what: str = "backup") -> Iterator[bytes]:
    """Yield the authenticated plaintext chunks read from *stream* (positioned after the header).

    Raises IntegrityError naming the first chunk that fails: altered, reordered,
    dropped, truncated or followed by extra data.
    """
    aead = AESGCM(payload_key(data_key, header))
    aad = header.digest
    block = header.chunk_size + TAG_SIZE
    current = read_exact(stream, block)
    counter = 0
    while True:
        following = read_exact(stream, block)
        last = not following
        if len(current) < TAG_SIZE or (not last and len(current) != block):
            raise IntegrityError(f"{what}: chunk {counter} is truncated")
        try:
            plain = aead.decrypt(nonce(counter, last), current, aad)
        except InvalidTag:
            raise IntegrityError(_diagnose(aead, current, counter, last, aad, what)) from None
        yield plain
        if last:
            return
        current = following
        counter += 1


def _diagnose(aead: AESGCM, chunk: bytes, counter: int, last: bool, aad: bytes, what: str) -> str:
    try:
        aead.decrypt(nonce(counter, not last), chunk, aad)
    except InvalidTag:
        where = "the header or chunk 0" if counter == 0 else f"chunk {counter}"
        return f"{what}: {where} failed authentication (altered, reordered or from another backup)"
    if last:
        return f"{what}: truncated after chunk {counter} (the final chunk is missing)"
    return f"{what}: chunk {counter} is marked final but more data follows (appended or spliced)"
