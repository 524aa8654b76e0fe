"""Compression stages: zstd or gzip, as readers over a source or writers into a sink."""

from __future__ import annotations

import io
import zlib
from typing import IO, Any, Literal

import zstandard

from sppg_backup.storage.base import CHUNK
from sppg_backup.stream.pipes import Readable

Compression = Literal["zstd", "gzip"]


class GzipReader(io.RawIOBase):
    """Reads `source` and returns it gzip-compressed (zlib releases the GIL while compressing)."""

    def __init__(self, source: Readable, level: int) -> None:
        self._source = source
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._done:
            data = self._source.read(CHUNK)
            if data:
                self._pending = self._zlib.compress(data)
            else:
                self._pending = self._zlib.flush()
                self._done = True
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def compressor(source: Readable, kind: Compression, level: int | None = None) -> IO[bytes]:
    """A reader giving `source` compressed; zstd uses every core."""
    if kind == "zstd":
        # Level 1: on ERP dumps it is as small as level 3 or smaller, at half the CPU (bench/backup_speed.py).
        zstd = zstandard.ZstdCompressor(level=level or 1, threads=-1)
        return zstd.stream_reader(source, read_size=CHUNK, closefd=False)  # type: ignore[arg-type, return-value]
    return io.BufferedReader(GzipReader(source, level or 6), CHUNK)


def decompressor(source: IO[bytes], kind: Compression) -> IO[bytes]:
    if kind == "zstd":
        zstd = zstandard.ZstdDecompressor()
        return zstd.stream_reader(source, read_size=CHUNK, read_across_frames=True, closefd=False)  # type: ignore[return-value]
    import gzip

    return gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[return-value]


class _GzipWriter(io.RawIOBase):
    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self._zlib = zlib.decompressobj(31)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        self._sink.write(self._zlib.decompress(data))
        return len(data)

    def finish(self) -> None:
        self._sink.write(self._zlib.flush())
        if not self._zlib.eof:
            raise ValueError("gzip stream is truncated")


def decompressing_writer(sink: IO[bytes], kind: Compression) -> Any:
    """A writer that decompresses what it is given into `sink`; call finish() at the end."""
    if kind == "zstd":
        return _ZstdWriter(sink)
    return _GzipWriter(sink)


class _ZstdWriter(io.RawIOBase):
    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self._zstd = zstandard.ZstdDecompressor().decompressobj()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        self._sink.write(self._zstd.decompress(bytes(data)))
        return len(data)

    def finish(self) -> None:
        if not self._zstd.eof:
            raise ValueError("zstd stream is truncated")
