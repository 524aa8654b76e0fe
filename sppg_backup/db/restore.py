"""Getting a backup back: fetch (download, sha256, decrypt, decompress), list, restore, compare rows."""

from __future__ import annotations

import subprocess
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zstandard

from sppg_backup.db import postgres, scratch_db, streamed_restore
from sppg_backup.db.catalog import Manifest
from sppg_backup.errors import CheckFailed, PermanentError, TransientError
from sppg_backup.storage import Storage
from sppg_backup.stream import pipes
from sppg_backup.stream.growing import GrowingFile, Tracking
from sppg_backup.stream.pack import unpack


def fetch_dump(
    storage: Storage, manifest: Manifest, identities: list[Any], dest: Path, grown: GrowingFile | None = None
) -> Path:
    """Write the backup's pg_dump archive to `dest` in one streamed pass; the sha256 must match the manifest.

    With `grown`, readers follow the file as it is written; it is marked finished once the sha256 matched.
    """
    where = storage.describe(manifest.data_key)
    if grown:
        grown.restart()
    try:
        with storage.open_read(manifest.data_key) as raw, open(dest, "wb", buffering=0 if grown else -1) as out:
            reader = pipes.HashingReader(raw)
            error = _decode(reader, Tracking(out, grown) if grown else out, manifest, identities)
            pipes.copy(reader, _Discard())  # the checksum covers every stored byte, read or not
        if reader.size != manifest.size or reader.sha256.hexdigest() != manifest.sha256:
            raise CheckFailed(
                "sha256",
                f"backup {manifest.id}: sha256 mismatch, {where} is corrupt "
                f"({reader.size} bytes, expected {manifest.size}); restore an older backup",
            )
        if error is not None:
            raise error
    except OSError as exc:  # the scratch file, not storage (its errors are ours already): full disk, permissions
        if grown:
            grown.fail(exc)
        dest.unlink(missing_ok=True)
        raise PermanentError(
            f"cannot write {dest}: {exc.strerror or exc}; free space there or set SPPG_BACKUP_SCRATCH_DIR"
        ) from None
    except BaseException as exc:
        if grown and isinstance(exc, TransientError):
            raise  # a retry writes the same file again, and its readers wait for it
        if grown:
            grown.fail(exc)
        dest.unlink(missing_ok=True)
        raise
    if grown:
        grown.finish()
    return dest


def _decode(reader: Any, out: Any, manifest: Manifest, identities: list[Any]) -> Exception | None:
    """Decrypt and decompress into `out`; return (not raise) a failure, so the checksum can be judged first."""
    try:
        unpack(reader, out, manifest.compression, manifest.encryption == "age", identities)
    except PermanentError as exc:
        return CheckFailed("decrypt", f"backup {manifest.id}: {exc}")
    except (zstandard.ZstdError, zlib.error, ValueError) as exc:
        return CheckFailed("decompress", f"backup {manifest.id}: does not decompress ({exc}); it is corrupt")
    return None


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def pg_restore_tool(url: str, bin_dir: Path | None) -> str:
    return postgres.find_tool("pg_restore", postgres.server_info(url).major, bin_dir)[0]


def list_archive(archive: Path, pg_restore: str) -> int:
    """`pg_restore --list` reads the archive's table of contents; returns its number of entries."""
    done = subprocess.run([pg_restore, "--list", str(archive)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CheckFailed("pg_restore --list", f"pg_restore --list cannot read the archive: {tail[0]}")
    return sum(1 for line in done.stdout.splitlines() if line and not line.startswith(";"))


def create_scratch_database(server_url: str, purpose: str) -> str:
    """A new, uniquely named database (sppg_<purpose>_<random>) on the server of `server_url`; its URL."""
    name = f"sppg_{purpose}_{uuid.uuid4().hex[:12]}"
    create_claimed(server_url, name)
    return postgres.with_database(server_url, name)


def create_claimed(server_url: str, name: str) -> None:
    """CREATE DATABASE `name`, claimed by this run until drop_database (or scratch_db.release)."""
    scratch_db.claim(server_url, name)
    try:
        with postgres.connect(postgres.with_database(server_url, "postgres")) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except BaseException:
        scratch_db.release(name)
        raise


def drop_database(url: str) -> None:
    """Drop the database of `url`, closing its connections."""
    target, _ = postgres.parse(url)
    with postgres.connect(postgres.with_database(url, "postgres")) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    scratch_db.release(target.database)


@contextmanager
def scratch_database(server_url: str, purpose: str) -> Iterator[str]:
    """A scratch database dropped afterwards whatever happens."""
    url = create_scratch_database(server_url, purpose)
    try:
        yield url
    finally:
        drop_database(url)


def restore_archive(
    url: str, archive: Path, pg_restore: str, jobs: int, check: str = "test restore", grown: GrowingFile | None = None
) -> None:
    """pg_restore into an existing database, in parallel, stopping at the first error; with `grown`, while the
    archive is still being written."""
    streamed_restore.restore(url, archive, grown or GrowingFile.complete(archive), pg_restore, jobs, check)


def compare_rows(url: str, expected: dict[str, int]) -> None:
    """Every table of the manifest is there with the same row count, and no other table."""
    with postgres.connect(url) as conn:
        found = postgres.row_counts(conn)
    problems = [f"{t}: {found.get(t, 'missing')} rows, expected {n}" for t, n in expected.items() if found.get(t) != n]
    problems += [f"{t}: not in the backup's manifest" for t in found if t not in expected]
    if problems:
        raise CheckFailed("row counts", f"{len(problems)} tables differ: " + "; ".join(problems[:5]))
