"""Daily verification: a backup nobody has restored is not a backup. The checks, in the guide's order."""

from __future__ import annotations

import contextlib
from datetime import datetime

from sppg_backup.db.catalog import Manifest, Verification, list_backups, manifest_key, read_manifest, write_manifest
from sppg_backup.errors import BackupError, CheckFailed, NotFoundError
from sppg_backup.storage import Storage

CHECKS = (
    "manifest",
    "exists",
    "size",
    "sha256",
    "decrypt",
    "decompress",
    "pg_restore --list",
    "test restore",
    "row counts",
)


def find_backup(storage: Storage, backup_id: str | None) -> Manifest:
    """The named backup, or the newest regular one (a safety copy only when there is nothing else); its manifest
    must exist and be readable."""
    if backup_id is None:
        listing = list_backups(storage)
        if not listing.backups:
            raise CheckFailed("manifest", f"no backup in {storage.url}: nothing to verify")
        regular = [m for m in listing.backups if m.purpose == "backup"]
        return (regular or listing.backups)[-1]
    try:
        return read_manifest(storage, "db", backup_id)
    except NotFoundError:
        raise CheckFailed(
            "manifest",
            f"backup {backup_id}: no manifest at {storage.describe(manifest_key('db', backup_id))}; "
            "without it this is not a complete backup",
        ) from None
    except BackupError as exc:
        raise CheckFailed("manifest", str(exc)) from None


def check_stored(storage: Storage, manifest: Manifest, min_size: int) -> int:
    """The data is there, with the size the manifest recorded and above the minimum."""
    where = storage.describe(manifest.data_key)
    try:
        size = storage.stat(manifest.data_key).size
    except NotFoundError:
        raise CheckFailed("exists", f"backup {manifest.id}: {where} is missing") from None
    if size != manifest.size:
        raise CheckFailed(
            "size",
            f"backup {manifest.id}: {where} has {size} bytes, the manifest says "
            f"{manifest.size}; it was truncated or replaced",
        )
    if size < min_size:
        raise CheckFailed(
            "size",
            f"backup {manifest.id}: {size} bytes, below the minimum of {min_size} bytes "
            "(SPPG_BACKUP_MIN_BACKUP_SIZE); the database may have been empty or the dump incomplete",
        )
    return size


def outcome(
    failure: CheckFailed | None, started: datetime, finished: datetime, checks: tuple[str, ...] = CHECKS
) -> Verification:
    return Verification(
        status="failed" if failure else "passed",
        checked_at=finished,
        check=failure.check if failure else None,
        detail=str(failure) if failure else "all checks passed: " + ", ".join(checks),
        duration_seconds=round((finished - started).total_seconds(), 3),
    )


def record(storages: list[Storage], manifest: Manifest, verification: Verification) -> Manifest:
    """Store the result in the manifest, beside the backup, wherever the backup is."""
    updated = manifest.model_copy(update={"verification": verification})
    for storage in storages:
        with contextlib.suppress(NotFoundError):
            storage.stat(manifest_key(manifest.kind, manifest.id))
            write_manifest(storage, updated)
    return updated
