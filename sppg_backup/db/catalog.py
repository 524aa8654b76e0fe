"""Manifests beside the data in storage: write, read, list. Storage is the source of truth."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError

from sppg_backup import keys
from sppg_backup.claims import release_id
from sppg_backup.display import human_size
from sppg_backup.errors import BackupError, NotFoundError, PermanentError
from sppg_backup.storage import Storage, get_bytes, put_bytes
from sppg_backup.storage.destinations import Destinations

Kind = Literal["db", "base", "files", "config", "full"]


class Source(BaseModel):
    model_config = ConfigDict(frozen=True)
    host: str
    port: int
    database: str
    user: str


class Verification(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: Literal["passed", "failed"]
    checked_at: datetime
    check: str | None = None
    detail: str = ""
    duration_seconds: float = 0.0


class Physical(BaseModel):
    """What a base backup is of and where its WAL starts and ends (pg_basebackup's own facts)."""

    model_config = ConfigDict(frozen=True)
    system_identifier: str
    timeline: int
    start_lsn: str
    end_lsn: str
    start_wal: str  # the first WAL segment it needs
    wal_included: bool = True  # the WAL from start to end is inside the tar: consistent without the archive
    pg_basebackup_version: str = ""


class Manifest(BaseModel):
    """Everything needed to find, check and restore one backup, by this tool or by hand."""

    model_config = ConfigDict(frozen=True)
    format_version: int = 1
    id: str
    kind: Kind = "db"
    status: Literal["complete"] = "complete"
    created_at: datetime
    finished_at: datetime
    duration_seconds: float
    source: Source
    server_version: str
    pg_dump_version: str
    format: str = "pg_dump-custom"
    compression: Literal["zstd", "gzip"]
    encryption: Literal["age", "none"]
    recipients: list[str]
    data_key: str
    size: int
    sha256: str
    tables: dict[str, int]
    created_by: dict[str, str] = {}
    tool_version: str = ""
    purpose: Literal["backup", "safety"] = "backup"  # safety: the target's state taken before a restore
    note: str = ""
    verification: Verification | None = None
    physical: Physical | None = None  # kind base only

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.status == "passed"

    @property
    def verification_text(self) -> str:
        if self.verification is None:
            return "not verified yet"
        return "verified" if self.verified else f"verification FAILED ({self.verification.check})"

    def choice(self, zone: ZoneInfo) -> str:
        """How the backup is offered in the restore form: the id first (all a restore reads), then what the
        engineer chooses by."""
        when = self.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M ") + (
            self.created_at.astimezone(zone).tzname() or ""
        )
        parts = [self.id, when, human_size(self.size), self.verification_text]
        if self.purpose == "safety":
            parts.append("SAFETY backup: " + (self.note or "taken before a restore"))
        return " · ".join(parts)


def new_backup_id(now: datetime) -> str:
    """erp_sppg_backup_YYYYMMDD_HHMMSS, in UTC."""
    return keys.backup_id(now)


def data_key(kind: Kind, backup_id: str, compression: str, encrypted: bool) -> str:
    return keys.backup_data(kind, backup_id, compression, encrypted)


def manifest_key(kind: Kind, backup_id: str) -> str:
    return keys.manifest(kind, backup_id)


def write_manifest(storage: Storage, manifest: Manifest) -> None:
    put_bytes(storage, manifest_key(manifest.kind, manifest.id), manifest.model_dump_json(indent=2).encode())


def delete_backup(storage: Storage, kind: Kind, backup_id: str, data: str) -> None:
    """Manifest first: a backup half-deleted is then an unlisted orphan, never a listed wreck."""
    for key in (manifest_key(kind, backup_id), data, keys.claim(manifest_key(kind, backup_id))):
        with contextlib.suppress(NotFoundError):
            storage.delete(key)


def read_manifest(storage: Storage, kind: Kind, backup_id: str) -> Manifest:
    key = manifest_key(kind, backup_id)
    try:
        return Manifest.model_validate_json(get_bytes(storage, key))
    except NotFoundError:
        raise NotFoundError(f"no backup {backup_id} in {storage.url}") from None
    except (ValidationError, ValueError) as exc:
        raise PermanentError(f"manifest {storage.describe(key)} is unreadable: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(exc).splitlines()[0]


@dataclass
class Listing:
    """Backups with a readable manifest (oldest first), unreadable manifests, and data with no manifest."""

    backups: list[Manifest] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    orphan_times: dict[str, datetime] = field(default_factory=dict)


def list_backups(storage: Storage, kinds: tuple[Kind, ...] = ("db",)) -> Listing:
    listing = Listing()
    for kind in kinds:
        objects = list(storage.list(kind + "/"))
        stems: set[str] = set()
        for obj in objects:
            if not obj.key.endswith(keys.MANIFEST_SUFFIX):
                continue
            stems.add(keys.stem(obj.key))
            try:
                listing.backups.append(Manifest.model_validate_json(get_bytes(storage, obj.key)))
            except (ValidationError, ValueError, BackupError) as exc:
                listing.unreadable.append((obj.key, _first_error(exc)))
        for obj in objects:
            if keys.stem(obj.key) not in stems:
                listing.orphans.append(obj.key)
                listing.orphan_times[obj.key] = obj.updated
    listing.backups.sort(key=lambda m: m.created_at)
    return listing


def previous_size(storage: Storage, manifest: Manifest) -> int:
    """The size of the backup before this one (its own size when it is the first), for the size-drop alert."""
    try:
        older = [m for m in list_backups(storage).backups if m.created_at < manifest.created_at]
    except BackupError:
        return manifest.size
    return older[-1].size if older else manifest.size


def to_json(listing: Listing) -> str:
    return json.dumps(
        {
            "backups": [m.model_dump(mode="json") for m in listing.backups],
            "unreadable": [{"key": k, "error": e} for k, e in listing.unreadable],
            "incomplete": listing.orphans,
        },
        indent=2,
    )


def check_copies(dest: Destinations, manifest: Manifest) -> None:
    """Every stored copy is there with the size and sha256 recorded while writing."""
    for storage in dest.all:
        info = storage.stat(manifest.data_key)
        if info.size != manifest.size or (info.sha256 and info.sha256 != manifest.sha256):
            raise PermanentError(
                f"backup {manifest.id}: {storage.describe(manifest.data_key)} has {info.size} bytes "
                f"sha256 {info.sha256}, expected {manifest.size} bytes sha256 {manifest.sha256}"
            )


def publish(dest: Destinations, manifest: Manifest) -> None:
    """Write the manifest beside every copy, the configured storage's last: from then on the backup exists."""
    for storage in reversed(dest.all):
        write_manifest(storage, manifest)
    release_id(dest.storage, manifest_key(manifest.kind, manifest.id))


def discard(dest: Destinations, manifest: Manifest) -> None:
    """Remove the data of a backup that could not be completed, so no partial backup remains."""
    for storage in dest.all:
        delete_backup(storage, manifest.kind, manifest.id, manifest.data_key)
    release_id(dest.storage, manifest_key(manifest.kind, manifest.id))


def check_and_publish(dest: Destinations, manifest: Manifest) -> None:
    """Check every copy, then list the backup. A permanent failure removes the copies; a transient one leaves
    them for the retry (unlisted until then)."""
    try:
        check_copies(dest, manifest)
        publish(dest, manifest)
    except PermanentError:
        discard(dest, manifest)
        raise
