"""Byte-stream stages (compress, decompress, fan out to several uploads) with bounded memory."""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import threading
from collections.abc import Callable
from typing import IO, NoReturn, Protocol

from sppg_backup.storage.base import CHUNK, ObjectInfo, Storage


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


def copy(source: Readable, sink: Writable) -> int:
    total = 0
    while chunk := source.read(CHUNK):
        sink.write(chunk)
        total += len(chunk)
    return total


class _Sink:
    def __init__(self, storage: Storage, key: str, depth: int) -> None:
        self.storage = storage
        self.key = key
        self.upload = storage.open_write(key, hashed=False)
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.upload.write(item)
                except BaseException as exc:  # handed to the writer thread
                    self.error = exc


class Fanout(io.RawIOBase):
    """A writer copying every byte to several uploads, hashing it once.

    Writes are gathered into CHUNK-sized pieces and handed to one thread per destination behind a
    bounded queue, so a slow destination (the network) does not stall the others until its queue is
    full; memory stays at most `depth` chunks per destination. Nothing is visible until commit().
    """

    def __init__(self, targets: list[tuple[Storage, str]], depth: int = 4) -> None:
        self._sinks: list[_Sink] = []
        self._closed_queues = False
        self._pending = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None  # e.g. stop the source at once
        try:
            for storage, key in targets:
                self._sinks.append(_Sink(storage, key, depth))
        except BaseException:
            self.abort()
            raise

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        self._pending += data
        if len(self._pending) >= CHUNK:
            self._send()
        return len(data)

    def _send(self) -> None:
        item = bytes(self._pending)
        self._pending.clear()
        self.sha256.update(item)
        self.size += len(item)
        for sink in self._sinks:
            if sink.error is not None:
                self._fail(sink.error)
            sink.queue.put(item)

    def _fail(self, error: BaseException) -> NoReturn:
        """Remember the first destination error (pyrage wraps what it gets) and stop the source."""
        if self.error is None:
            self.error = error
            if self.on_error is not None:
                self.on_error(error)
        raise error

    def _drain(self) -> None:
        if not self._closed_queues:
            self._closed_queues = True
            for sink in self._sinks:
                sink.queue.put(None)
            for sink in self._sinks:
                sink.thread.join()

    def commit(self) -> list[ObjectInfo]:
        """Finish every upload; if any fails, remove the ones already finished and raise."""
        try:
            if self._pending:
                self._send()
        except BaseException:
            self.abort()
            raise
        self._drain()
        for sink in self._sinks:
            if sink.error is not None:
                self.abort()
                raise self.error or sink.error
        digest = self.sha256.hexdigest()
        done: list[ObjectInfo] = []
        try:
            for sink in self._sinks:
                done.append(sink.upload.commit(sha256=digest))
        except BaseException:
            for sink in self._sinks[len(done) + 1 :]:
                sink.upload.abort()
            for sink in self._sinks[: len(done)]:
                sink.storage.delete(sink.key)
            raise
        return done

    def abort(self) -> None:
        self._drain()
        for sink in self._sinks:
            with contextlib.suppress(Exception):  # best effort: the original error is what matters
                sink.upload.abort()


class HashingReader(io.RawIOBase):
    """Reads through `source`, computing sha256 and counting bytes."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.sha256.update(data)
        self.size += size
        return size


class Prefetch(io.RawIOBase):
    """Reads `source` ahead in a thread, up to `depth` chunks, so the producer (pg_dump) never waits on us
    while we are busy compressing; memory is bounded by depth * CHUNK."""

    def __init__(self, source: IO[bytes], depth: int = 8) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._current = memoryview(b"")
        self._chunk = b""
        self._done = False
        self._stopped: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True)
        self._thread.start()

    def _run(self, source: IO[bytes]) -> None:
        try:
            while chunk := source.read(CHUNK):
                self._queue.put(chunk)
            self._queue.put(b"")
        except BaseException as exc:  # handed to the reading thread
            self._queue.put(exc)

    def readable(self) -> bool:
        return True

    def stop(self, error: BaseException) -> None:
        """Make the next read fail with `error`: the consumer's destination failed, reading on is wasted."""
        self._stopped = error

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        """Up to `size` bytes (a whole prefetched chunk at most); b"" at the end."""
        if self._stopped is not None:
            raise self._stopped
        if not self._current and not self._done:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            self._done = not item
            self._chunk = item
            self._current = memoryview(item)
        size = len(self._current) if size < 0 else min(size, len(self._current))
        if size == len(self._chunk):  # a whole chunk: hand it over without copying
            self._current = memoryview(b"")
            return self._chunk
        data = bytes(self._current[:size])
        self._current = self._current[size:]
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
