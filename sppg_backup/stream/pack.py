"""A packed object: zstd, then age, streamed into storage; and back."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from sppg_backup.storage import ObjectInfo, Storage
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
