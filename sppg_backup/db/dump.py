"""The daily database backup: one streamed pass pg_dump -> compress -> encrypt -> sha256 -> every copy."""

from __future__ import annotations

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
    manifest_key,
    new_backup_id,
)
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage
from sppg_backup.storage.destinations import Destinations
from sppg_backup.stream import crypto, pack


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
    copies = pack.Copies(dest, key)
    try:
        with postgres.dump(settings.database_url, settings.pg_bin_dir, settings.lock_wait_timeout_seconds) as (
            stream,
            info,
        ):
            copies.write(stream, settings.compression, settings.compression_level, recipients)
    except BaseException:
        copies.abort()
        raise
    stored = copies.commit(f"backup {backup_id}")
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
        size=stored.size,
        sha256=stored.sha256 or "",
        tables=info.tables,
        created_by=who or {},
        tool_version=__version__,
        purpose=purpose,
        note=note,
    )
