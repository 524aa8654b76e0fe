"""What people read: notification texts and the run summary, in WIB, with the next step to take."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from .catalog import Manifest, human_size, shown_time
from .prune import PruneResult


def backup_succeeded(manifest: Manifest, where: str, zone: ZoneInfo) -> tuple[str, str]:
    title = f"Backup OK: {manifest.id}"
    body = (
        f"Database {manifest.source.database} on {manifest.source.host} was backed up at "
        f"{shown_time(manifest.created_at, zone)}.\n"
        f"Backup: {manifest.id}\nSize: {human_size(manifest.size)} ({manifest.size} bytes)\n"
        f"Duration: {manifest.duration_seconds:.1f} s\nTables: {len(manifest.tables)}, "
        f"rows: {sum(manifest.tables.values())}\nStored at: {where}\nsha256: {manifest.sha256}"
    )
    return title, body


def backup_failed(
    error: BaseException, database: str, storage_url: str, listed: Manifest | None = None
) -> tuple[str, str]:
    title = f"Backup FAILED: database {database}"
    outcome = (
        f"Backup {listed.id} itself was stored and verified; the step after it failed.\n"
        if listed
        else "No new backup was recorded; older backups were not touched.\n"
    )
    body = (
        f"The database backup failed: {error}\n{outcome}"
        f"Next step: fix the cause above, then run `sppg-backup backup db` (or retry the flow run in the "
        f"Prefect UI). Check the newest good backup with `sppg-backup list` (storage {storage_url})."
    )
    return title, body


def backup_markdown(manifest: Manifest, where: str, zone: ZoneInfo, pruned: list[PruneResult]) -> str:
    rows = "\n".join(f"| {name} | {count} |" for name, count in sorted(manifest.tables.items()))
    deleted = sum((p.deleted for p in pruned), [])
    return (
        f"# Backup {manifest.id}\n\n"
        f"| | |\n|---|---|\n"
        f"| database | {manifest.source.database} on {manifest.source.host}:{manifest.source.port} |\n"
        f"| created | {shown_time(manifest.created_at, zone)} |\n| duration | {manifest.duration_seconds:.1f} s |\n"
        f"| size | {human_size(manifest.size)} |\n| compression | {manifest.compression} |\n"
        f"| encryption | {manifest.encryption} ({len(manifest.recipients)} recipients) |\n"
        f"| stored at | {where} |\n| sha256 | `{manifest.sha256}` |\n"
        f"| pruned | {', '.join(deleted) if deleted else 'nothing'} |\n\n"
        f"## Rows per table at dump time\n\n| table | rows |\n|---|---|\n{rows}\n"
    )
