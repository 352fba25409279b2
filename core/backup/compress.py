"""Streaming zstandard compression with bounded memory, and a thread pipeline helper."""

from __future__ import annotations

import io
import os
import queue
import threading
from typing import IO, Callable, Iterable, Iterator, TypeVar

import zstandard

#: Level 1-3 keeps compression faster than the disk; 1 is the default (speed first).
DEFAULT_LEVEL = 1
READ_SIZE = 1 << 20
T = TypeVar("T")


def default_threads() -> int:
    """zstd worker threads: one more than the cores (keeps them busy while a job is handed over), at most 4."""
    return max(1, min(4, (os.cpu_count() or 1) + 1))


def compress(pieces: Iterable[bytes], level: int = DEFAULT_LEVEL, threads: int | None = None) -> Iterator[bytes]:
    """Yield a zstd frame (with content checksum) of *pieces*, as the compressor produces it
    (at most about one zstd job, a few MiB, at a time)."""
    cctx = zstandard.ZstdCompressor(level=level, threads=default_threads() if threads is None else threads, write_checksum=True)
    compressor = cctx.compressobj()
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


def decompress(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the decompressed bytes of a zstd frame given as *pieces*, ~1 MiB at a time.

    Output is bounded per step, so a highly compressible frame cannot blow up memory.
    """
    reader = zstandard.ZstdDecompressor().stream_reader(IterReader(pieces), read_size=READ_SIZE)
    while True:
        out = reader.read(READ_SIZE)
        if not out:
            return
        yield out


def read_blocks(stream: IO[bytes], size: int = READ_SIZE, on_read: Callable[[bytes], None] | None = None) -> Iterator[bytes]:
    """Read *stream* in blocks of *size*, calling *on_read* on each (hashing, progress)."""
    while True:
        block = stream.read(size)
        if not block:
            return
        if on_read is not None:
            on_read(block)
        yield block


class IterReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte pieces."""

    def __init__(self, pieces: Iterable[bytes]):
        self._pieces = iter(pieces)
        self._buffer = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        """At most *size* bytes, from one piece at most (a short read; no copy of a whole piece)."""
        while self._offset >= len(self._buffer):
            try:
                self._buffer = next(self._pieces)
            except StopIteration:
                return b""
            self._offset = 0
        if self._offset == 0 and (size < 0 or size >= len(self._buffer)):
            self._offset = len(self._buffer)
            return self._buffer
        end = len(self._buffer) if size < 0 else min(len(self._buffer), self._offset + size)
        out = self._buffer[self._offset:end]
        self._offset = end
        return out

    def readinto(self, target) -> int:  # type: ignore[override]
        while self._offset >= len(self._buffer):
            try:
                self._buffer = next(self._pieces)
            except StopIteration:
                return 0
            self._offset = 0
        n = min(len(target), len(self._buffer) - self._offset)
        target[:n] = self._buffer[self._offset : self._offset + n]
        self._offset += n
        return n


_DONE = object()


def threaded(source: Iterable[T], depth: int = 2, name: str = "tradeguard-backup-stage") -> Iterator[T]:
    """Run *source* in a background thread, handing items over through a bounded queue.

    Stages of the backup pipeline overlap this way (hashing and reading, zstd,
    AES-GCM and the target's writes all release the GIL); at most *depth* items
    wait between two stages, so memory stays flat. An exception in the source
    is re-raised in the consumer; abandoning the consumer stops the thread.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            items.put(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.05)
