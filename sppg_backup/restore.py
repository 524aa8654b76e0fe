"""Fetch a backup back: download, check sha256, decrypt, decompress into a plain pg_dump file."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import zstandard

from . import crypto, streams
from .catalog import Manifest
from .errors import PermanentError
from .storage import Storage


def fetch_dump(storage: Storage, manifest: Manifest, identities: list[Any], dest: Path) -> Path:
    """Write the backup's pg_dump archive to `dest` in one streamed pass; the sha256 must match the manifest."""
    where = storage.describe(manifest.data_key)
    try:
        with storage.open_read(manifest.data_key) as raw, open(dest, "wb") as out:
            reader = streams.HashingReader(raw)
            error = _decode(reader, out, manifest, identities)
            streams.copy(reader, _Discard())  # the checksum covers every stored byte, read or not
        if reader.size != manifest.size or reader.sha256.hexdigest() != manifest.sha256:
            raise PermanentError(
                f"backup {manifest.id}: sha256 mismatch, {where} is corrupt "
                f"({reader.size} bytes, expected {manifest.size}); restore an older backup"
            )
        if error is not None:
            raise error
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def _decode(reader: Any, out: Any, manifest: Manifest, identities: list[Any]) -> Exception | None:
    """Decrypt and decompress into `out`; return (not raise) a failure, so the checksum can be judged first."""
    plain = streams.decompressing_writer(out, manifest.compression)
    try:
        if manifest.encryption == "age":
            crypto.decrypt(reader, plain, identities)
        else:
            streams.copy(reader, plain)
        plain.finish()
    except PermanentError as exc:
        return exc
    except (zstandard.ZstdError, zlib.error, ValueError) as exc:
        return PermanentError(f"backup {manifest.id}: does not decompress ({exc}); it is corrupt")
    return None


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)
