"""The one storage interface every backend implements, and the object info it returns."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from sppg_backup.errors import PermanentError

CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    updated: datetime
    sha256: str | None = None


class Upload(Protocol):
    """A write in progress: invisible until commit(), gone after abort()."""

    def write(self, data: bytes | memoryview) -> int: ...

    def commit(self, sha256: str | None = None) -> ObjectInfo:
        """Make the object visible. `sha256` is required when opened with hashed=False."""
        ...

    def abort(self) -> None: ...


class Storage(Protocol):
    """Put from a stream, open for reading, stat, list by prefix, delete."""

    url: str
    folder: Path | None  # the local folder holding the objects; None for a bucket

    def open_write(self, key: str, hashed: bool = True) -> Upload:
        """Start a write; hashed=False when the caller computes sha256 itself (once for several copies)."""
        ...

    def open_read(self, key: str) -> BinaryIO: ...

    def stat(self, key: str) -> ObjectInfo: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def link(self, source: Storage, key: str) -> ObjectInfo:
        """Give `source`'s object `key` a name here too without copying; only when both have a `folder` on one
        filesystem (see backup.same_disk)."""
        ...

    def create(self, key: str, data: bytes) -> bool:
        """Write a small object only if none has this key, atomically (two callers never both get True)."""
        ...

    def move(self, source: str, dest: str) -> None:
        """Give object `source` the key `dest` in place of what `dest` held (readers see the old object or the
        new one, never a mix), then `source` is gone; its recorded sha256 goes with it."""
        ...

    def abandoned_uploads(self, remove: bool = False, prefix: str = "", grace: float = 10) -> tuple[str, ...]:
        """What uploads of killed processes left behind under `prefix` (never a live upload's: one holding its
        lock, or started less than `grace` seconds ago), removed with `remove`."""
        ...

    def describe(self, key: str) -> str:
        """Where a key lives, as a person would type it (file:///..., gs://...)."""
        ...


def put(storage: Storage, key: str, stream: BinaryIO) -> ObjectInfo:
    """Copy a readable stream into storage; nothing is visible unless all of it was written."""
    upload = storage.open_write(key)
    try:
        while chunk := stream.read(CHUNK):
            upload.write(chunk)
    except BaseException:
        upload.abort()
        raise
    return upload.commit()


def put_bytes(storage: Storage, key: str, data: bytes) -> ObjectInfo:
    upload = storage.open_write(key)
    try:
        upload.write(data)
    except BaseException:
        upload.abort()
        raise
    return upload.commit()


def get_bytes(storage: Storage, key: str) -> bytes:
    with storage.open_read(key) as stream:
        return stream.read()


def final_digest(computed: Any, given: str | None) -> str:
    """The caller's digest if it hashed, else the one computed while writing."""
    if given is not None:
        return given
    if computed is None:
        raise ValueError("an upload opened with hashed=False needs commit(sha256=...)")
    return str(computed.hexdigest())


def check_key(key: str) -> str:
    """Keys are relative '/'-separated paths; reject anything that could escape the root."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\0" in key or any(part in ("", ".", "..") for part in parts):
        raise PermanentError(
            f"{key!r} is not a name in storage (ids look like erp_sppg_backup_20261124_030000); "
            "`sppg-backup list` shows them"
        )
    return key


def file_sha256(path: Path) -> str:
    """The sha256 of a local file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
