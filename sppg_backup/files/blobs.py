"""Content-addressed blobs: each distinct content is stored once, zstd-compressed and age-encrypted.

A blob's name is the sha256 of its plain content; what is stored under it is compressed and encrypted, so
the name never changes when keys rotate, and a reader checks the content against the name.
"""

from __future__ import annotations

import hashlib
from typing import IO, Any

import zstandard

from sppg_backup.errors import CheckFailed, NotFoundError, PermanentError
from sppg_backup.storage import Storage
from sppg_backup.stream import pipes
from sppg_backup.stream.pack import store_packed, unpack


class ChangedWhileReading(Exception):
    """The file's content was not the one hashed a moment before: it is being written to."""


class BlobStore:
    def __init__(self, storage: Storage, prefix: str, recipients: list[str], level: int | None = None) -> None:
        self.storage, self.prefix, self.recipients, self.level = storage, prefix, recipients, level

    def key(self, sha256: str) -> str:
        return f"{self.prefix}/{sha256[:2]}/{sha256}.zst" + (".age" if self.recipients else "")

    def exists(self, key: str) -> bool:
        try:
            self.storage.stat(key)
            return True
        except NotFoundError:
            return False

    def put(self, source: IO[bytes], sha256: str) -> tuple[str, int]:
        """Store `source`, whose content must hash to `sha256`; the blob's key and stored size."""
        key = self.key(sha256)
        reader = pipes.HashingReader(source)

        def same_content() -> None:
            if reader.sha256.hexdigest() != sha256:
                raise ChangedWhileReading(key)

        info = store_packed(self.storage, key, reader, self.recipients, self.level, same_content)  # type: ignore[arg-type]
        return key, info.size

    def get(self, key: str, sink: Any, identities: list[Any], expected: str) -> int:
        """Write the blob's plain content to `sink`; its sha256 must be `expected`. Returns its size."""
        checked = _HashingWriter(sink)
        try:
            with self.storage.open_read(key) as raw:
                unpack(raw, checked, "zstd", key.endswith(".age"), identities)
        except NotFoundError:
            raise NotFoundError(f"blob {self.storage.describe(key)} is missing") from None
        except PermanentError as exc:
            raise CheckFailed("decrypt", f"{self.storage.describe(key)}: {exc}") from None
        except (ValueError, zstandard.ZstdError) as exc:
            raise CheckFailed("decompress", f"{self.storage.describe(key)} does not decompress: {exc}") from None
        if checked.sha256.hexdigest() != expected:
            raise CheckFailed("sha256", f"{self.storage.describe(key)} is corrupt: its content does not match its name")
        return checked.size


class _HashingWriter:
    def __init__(self, sink: Any) -> None:
        self.sink, self.sha256, self.size = sink, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def file_sha256(handle: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(pipes.CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
