"""The daily database backup: one streamed pass pg_dump -> compress -> encrypt -> sha256 -> every copy."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Literal

from sppg_backup import __version__
from sppg_backup.claims import free_id, release_id
from sppg_backup.db import postgres
from sppg_backup.db.catalog import (
    Manifest,
    Source,
    data_key,
    delete_backup,
    manifest_key,
    new_backup_id,
    write_manifest,
)
from sppg_backup.errors import BackupError, PermanentError
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage
from sppg_backup.storage.destinations import Destinations, same_disk
from sppg_backup.stream import compress, crypto, pipes


def check_source(settings: Settings) -> postgres.ServerInfo:
    """The database answers and a pg_dump new enough for it is installed."""
    info = postgres.server_info(settings.database_url)
    postgres.find_tool("pg_dump", info.major, settings.pg_bin_dir)
    return info


def reserve_id(storage: Storage, now: datetime) -> str:
    """A backup id for `now`, moved on by a second while an earlier backup holds it."""
    return free_id(storage, now, new_backup_id, lambda backup_id: manifest_key("db", backup_id))


def dump(
    settings: Settings,
    dest: Destinations,
    backup_id: str,
    who: dict[str, str] | None = None,
    purpose: Literal["backup", "safety"] = "backup",
    note: str = "",
) -> Manifest:
    """Dump, compress, encrypt and store every copy in one pass; returns the manifest, not yet published.

    Nothing becomes visible unless pg_dump and every copy finished; then each copy's size and sha256 agree. A
    failed dump gives its id up.
    """
    try:
        return _dump(settings, dest, backup_id, who, purpose, note)
    except BaseException:
        release_id(dest.storage, manifest_key("db", backup_id))
        raise


def _dump(
    settings: Settings,
    dest: Destinations,
    backup_id: str,
    who: dict[str, str] | None,
    purpose: Literal["backup", "safety"],
    note: str,
) -> Manifest:
    recipients = settings.require_recipients()
    crypto.recipients(recipients)  # a bad key fails before pg_dump starts
    started = datetime.now(UTC)
    clock = time.monotonic()
    key = data_key("db", backup_id, settings.compression, bool(recipients))
    linked = dest.local if same_disk(dest.storage, dest.local) else None
    fanout = pipes.Fanout([(storage, key) for storage in dest.all if storage is not linked])
    try:
        with postgres.dump(settings.database_url, settings.pg_bin_dir, settings.lock_wait_timeout_seconds) as (
            stream,
            info,
        ):
            source = pipes.Prefetch(stream)
            fanout.on_error = source.stop
            compressed = compress.compressor(source, settings.compression, settings.compression_level)
            try:
                if recipients:
                    crypto.encrypt(compressed, fanout, recipients)
                else:
                    pipes.copy(compressed, fanout)
            except Exception:
                if fanout.error is not None:  # the real cause, not pyrage's wrapper around it
                    raise fanout.error from None
                raise
    except BaseException:
        fanout.abort()
        raise
    copies = fanout.commit()
    try:
        if linked is not None:
            copies.append(linked.link(dest.storage, key))
        if len({(c.size, c.sha256) for c in copies}) != 1:
            raise PermanentError(f"backup {backup_id}: the copies differ after writing; none was kept")
    except BaseException:
        for storage in dest.all:
            with contextlib.suppress(BackupError):
                storage.delete(key)
        raise
    target = info.server.target
    return Manifest(
        id=backup_id,
        created_at=started,
        finished_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
        source=Source(host=target.host, port=target.port, database=target.database, user=target.user),
        server_version=info.server.version,
        pg_dump_version=info.pg_dump_version,
        compression=settings.compression,
        encryption="age" if recipients else "none",
        recipients=recipients,
        data_key=key,
        size=copies[0].size,
        sha256=copies[0].sha256 or "",
        tables=info.tables,
        created_by=who or {},
        tool_version=__version__,
        purpose=purpose,
        note=note,
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
    release_id(dest.storage, manifest_key("db", manifest.id))


def discard(dest: Destinations, manifest: Manifest) -> None:
    """Remove the data of a backup that could not be completed, so no partial backup remains."""
    for storage in dest.all:
        delete_backup(storage, "db", manifest.id, manifest.data_key)
    release_id(dest.storage, manifest_key("db", manifest.id))
