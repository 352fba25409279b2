"""The STREAM format on its own: round trips and every way of tampering with chunks."""

from __future__ import annotations

import io
import os

import pytest

from tradeguard.backup.compress import compress, decompress, threaded
from tradeguard.backup.stream import TAG_SIZE, Header, decrypt_stream, encrypt_stream
from tradeguard.errors import IntegrityError

CHUNK = 1024
KEY = bytes(range(32))


def header(**changes):
    fields = dict(backup_id="tg-20260101T000000Z-abcdef", part="data", key_id="backup-00000000", wrapped_key=b"w" * 40,
                  kdf={"scheme": "test"}, salt=b"s" * 32, created_at="2026-01-01T00:00:00.000000Z", chunk_size=CHUNK)
    fields.update(changes)
    return Header(**fields)


def seal(data: bytes, hdr: Header | None = None) -> bytes:
    hdr = hdr or header()
    pieces = [data[i:i + 700] for i in range(0, len(data), 700)] or [b""]
    return b"".join(encrypt_stream(KEY, hdr, pieces))


def unseal(blob: bytes, key: bytes = KEY) -> bytes:
    stream = io.BytesIO(blob)
    hdr, _ = Header.read(stream)
    return b"".join(decrypt_stream(key, hdr, stream))


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    stream = io.BytesIO(blob)
    _, raw = Header.read(stream)
    body = blob[len(raw):]
    size = CHUNK + TAG_SIZE
    return raw, [body[i:i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_at_every_boundary(size):
    data = os.urandom(size)
    blob = seal(data)
    assert unseal(blob) == data
    _, chunks = split(blob)
    assert len(chunks) == max(1, -(-size // CHUNK))  # the final chunk is never empty unless the stream is


def test_every_single_byte_flip_is_detected():
    blob = seal(os.urandom(2 * CHUNK + 100))
    for offset in range(0, len(blob), 7):
        bad = bytearray(blob)
        bad[offset] ^= 0x01
        with pytest.raises(IntegrityError):
            unseal(bytes(bad))


def test_truncation_at_a_chunk_boundary_is_detected():
    raw, chunks = split(seal(os.urandom(3 * CHUNK + 5)))
    with pytest.raises(IntegrityError, match="truncated after chunk 1"):
        unseal(raw + b"".join(chunks[:2]))


def test_truncation_inside_a_chunk_is_detected():
    blob = seal(os.urandom(3 * CHUNK + 5))
    with pytest.raises(IntegrityError):
        unseal(blob[:-3])


def test_dropped_reordered_and_duplicated_chunks_are_detected():
    raw, chunks = split(seal(os.urandom(4 * CHUNK)))
    variants = {  # order of chunks -> the first position that must fail
        "dropped": ([chunks[0], chunks[2], chunks[3]], "chunk 1"),
        "swapped": ([chunks[0], chunks[2], chunks[1], chunks[3]], "chunk 1"),
        "duplicated": ([chunks[0], chunks[1], chunks[1], chunks[2], chunks[3]], "chunk 2"),
    }
    for order, where in variants.values():
        with pytest.raises(IntegrityError, match=where):
            unseal(raw + b"".join(order))


def test_appended_data_and_chunks_from_another_backup_are_detected():
    data = os.urandom(2 * CHUNK + 9)
    raw, chunks = split(seal(data))
    _, foreign = split(seal(data, header(salt=b"t" * 32)))  # same key and data, other backup
    with pytest.raises(IntegrityError):
        unseal(raw + chunks[0] + foreign[1] + chunks[2])
    with pytest.raises(IntegrityError, match="chunk 2"):
        unseal(raw + b"".join(chunks) + chunks[-1])
    full_raw, full = split(seal(os.urandom(2 * CHUNK)))
    with pytest.raises(IntegrityError, match="marked final but more data follows"):
        unseal(full_raw + b"".join(full) + full[0])


def test_altered_header_fails_every_chunk():
    data = os.urandom(CHUNK + 1)
    _, chunks = split(seal(data))
    other = header(created_at="2026-01-01T00:00:00.000001Z").encode()
    with pytest.raises(IntegrityError, match="header or chunk 0"):
        unseal(other + b"".join(chunks))


def test_wrong_key_fails_authentication():
    with pytest.raises(IntegrityError):
        unseal(seal(b"secret data"), key=bytes(32))


def test_not_a_backup():
    with pytest.raises(IntegrityError, match="bad magic"):
        unseal(b"PK\x03\x04" + b"\x00" * 100)


def test_compression_round_trip_is_bounded_per_step():
    data = b"\x00" * (64 << 20)  # 64 MiB of zeros compress to almost nothing
    packed = b"".join(compress([data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]))
    assert len(packed) < 1 << 20
    sizes = [len(piece) for piece in decompress(iter([packed]))]
    assert sum(sizes) == len(data) and max(sizes) <= 1 << 20


def test_threaded_stage_passes_errors_through():
    def broken():
        yield b"a"
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(threaded(broken()))
