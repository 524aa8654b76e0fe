"""A packed object: zstd, then age, streamed into storage (to every copy at once); and back."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import zstandard

from sppg_backup.errors import BackupError, CheckFailed, PermanentError
from sppg_backup.storage import ObjectInfo, Storage
from sppg_backup.storage.destinations import Destinations, same_disk
from sppg_backup.stream import compress, crypto, pipes


def store_packed(
    storage: Storage,
    key: str,
    source: IO[bytes],
    recipients: list[str],
    level: int | None = None,
    check: Callable[[], None] | None = None,
) -> ObjectInfo:
    """zstd, then age to `recipients` (none: not encrypted), streamed to `key`; `check` runs before the commit.
    Nothing is visible unless all of it arrived and the check passed."""
    packed = compress.compressor(source, "zstd", level)
    upload = storage.open_write(key)
    try:
        if recipients:
            crypto.encrypt(packed, upload, recipients)
        else:
            pipes.copy(packed, upload)
        if check is not None:
            check()
    except BaseException:
        upload.abort()
        raise
    return upload.commit()


def unpack(
    raw: IO[bytes], sink: Any, compression: compress.Compression, encrypted: bool, identities: list[Any]
) -> None:
    """The inverse of store_packed: decrypt (when encrypted) and decompress `raw` into `sink`."""
    plain = compress.decompressing_writer(sink, compression)
    if encrypted:
        crypto.decrypt(raw, plain, identities)
    else:
        pipes.copy(raw, plain)
    plain.finish()


class Copies:
    """One stream written, compressed and encrypted once, to every copy of `dest` at once: the local copy is
    hard-linked instead when it is on the storage's disk. Nothing is visible until commit(), and commit() keeps
    nothing unless every copy has the same size and sha256."""

    def __init__(self, dest: Destinations, key: str) -> None:
        self.dest, self.key = dest, key
        self.linked = dest.local if same_disk(dest.storage, dest.local) else None
        self.fanout = pipes.Fanout([(storage, key) for storage in dest.all if storage is not self.linked])

    def write(
        self, stream: IO[bytes], compression: compress.Compression, level: int | None, recipients: list[str]
    ) -> None:
        source = pipes.Prefetch(stream)
        self.fanout.on_error = source.stop
        compressed = compress.compressor(source, compression, level)
        try:
            if recipients:
                crypto.encrypt(compressed, self.fanout, recipients)
            else:
                pipes.copy(compressed, self.fanout)
        except Exception:
            if self.fanout.error is not None:  # the real cause, not pyrage's wrapper around it
                raise self.fanout.error from None
            raise

    def abort(self) -> None:
        self.fanout.abort()

    def commit(self, what: str) -> ObjectInfo:
        copies = self.fanout.commit()
        try:
            if self.linked is not None:
                copies.append(self.linked.link(self.dest.storage, self.key))
            if len({(c.size, c.sha256) for c in copies}) != 1:
                raise PermanentError(f"{what}: the copies differ after writing; none was kept")
        except BaseException:
            for storage in self.dest.all:
                with contextlib.suppress(BackupError):
                    storage.delete(self.key)
            raise
        return copies[0]


class Produced(io.RawIOBase):
    """The read end of a pipe a thread writes into; a failure of the writer is raised to the reader."""

    def __init__(self, produce: Callable[[IO[bytes]], None]) -> None:
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb")
        self.error: BaseException | None = None

        def run() -> None:
            try:
                with os.fdopen(write_fd, "wb") as sink:
                    produce(sink)
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = self._reader.readinto(buffer)
        if not size:
            self._thread.join()
            if self.error is not None:
                raise self.error
        return size

    def close(self) -> None:
        self._reader.close()
        super().close()


@contextlib.contextmanager
def opened(stored: Path, identities: list[Any], compression: compress.Compression = "zstd") -> Iterator[IO[bytes]]:
    """The plain content of a fetched part, decrypted and decompressed while it is read."""

    def decode(sink: IO[bytes]) -> None:
        with open(stored, "rb") as raw:
            unpack(raw, sink, compression, stored.name.endswith(".age"), identities)

    with Produced(decode) as source:
        yield io.BufferedReader(source, pipes.CHUNK)  # type: ignore[arg-type]


def download(storage: Storage, key: str, size: int, sha256: str, dest: Path, what: str) -> Path:
    """Download `key` as stored into `dest` and check its size and sha256 before anything is done with it."""
    free = shutil.disk_usage(dest.parent).free
    if size > free:
        raise PermanentError(f"{dest.parent} has {free} bytes free, {what} needs {size}; set SCRATCH_DIR")
    try:
        with storage.open_read(key) as raw, open(dest, "wb") as out:
            reader = pipes.HashingReader(raw)
            pipes.copy(reader, out)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if reader.sha256.hexdigest() != sha256 or reader.size != size:
        dest.unlink(missing_ok=True)
        raise CheckFailed("sha256", f"{storage.describe(key)}: sha256 mismatch, the stored {what} is corrupt")
    return dest


@contextlib.contextmanager
def streamed(
    storage: Storage,
    key: str,
    size: int,
    sha256: str,
    identities: list[Any],
    compression: compress.Compression,
    what: str,
) -> Iterator[IO[bytes]]:
    """The plain content of `key` read straight from storage, decrypted and decompressed as it arrives, nothing
    kept on disk. Its size and sha256 are only known at the end: the caller reads it to its end (the rest is
    drained here) and must throw away what it made from it when this raises."""
    with storage.open_read(key) as raw:
        stored = pipes.HashingReader(raw)
        fetched: IO[bytes] = pipes.Prefetch(stored)  # type: ignore[arg-type, assignment]
        # age decrypts by pushing into a writer: a thread does it, and only the compressed bytes cross the pipe
        encrypted = key.endswith(".age")
        decrypting = Produced(lambda sink: crypto.decrypt(fetched, sink, identities)) if encrypted else None
        source = io.BufferedReader(decrypting, pipes.CHUNK) if decrypting else fetched  # type: ignore[arg-type]
        # decompressed ahead in a thread (zstd lets go of the GIL) while the caller writes what came before
        plain: IO[bytes] = pipes.Prefetch(compress.decompressor(source, compression))  # type: ignore[arg-type, assignment]
        try:
            yield plain
            while plain.read(pipes.CHUNK):
                pass
        except (PermanentError, zstandard.ZstdError, zlib.error, EOFError) as exc:
            damaged = decrypting.error if decrypting is not None else None
            if damaged is None and isinstance(exc, PermanentError):
                raise  # the caller's own failure (a refused member, a full disk)
            said = f"{storage.describe(key)}: the stored {what} cannot be read: {damaged or exc}"
            raise CheckFailed("decrypt", said) from None
        finally:
            source.close()
    if stored.sha256.hexdigest() != sha256 or stored.size != size:
        raise CheckFailed("sha256", f"{storage.describe(key)}: sha256 mismatch, the stored {what} is corrupt")
