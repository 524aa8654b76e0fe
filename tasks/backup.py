"""Tasks of the database backup flow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db import catalog, dump
from sppg_backup.db.catalog import Manifest, list_backups, previous_size
from sppg_backup.db.postgres import parse
from sppg_backup.db.prune import PruneResult, prune
from sppg_backup.db.retention import RetentionPolicy
from sppg_backup.display import human_size
from sppg_backup.errors import BackupError
from sppg_backup.ops import replicas, report, report_files
from sppg_backup.physical.retention import prune_wal
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import audit_trail, destinations, who
from sppg_backup.tasks.reporting import Entry, Measures, tell


@task(name="check-database", cache_policy=NO_CACHE, timeout_seconds=120)
def check_database(settings: Settings) -> str:
    info = dump.check_source(settings)
    get_run_logger().info("database %s answers, PostgreSQL %s", info.target.label, info.version)
    return info.version


@task(name="dump-compress-encrypt-upload", cache_policy=NO_CACHE)  # timeout: DUMP_TIMEOUT_SECONDS
def dump_database(settings: Settings) -> Manifest:
    """pg_dump -> compress -> encrypt -> sha256 -> storage and local copy, in one streamed pass."""
    dest = destinations(settings)
    backup_id = dump.reserve_id(dest.storage, datetime.now(UTC))
    get_run_logger().info("backup %s: dumping to %s", backup_id, ", ".join(s.url for s in dest.all))
    manifest = dump.dump(settings, dest, backup_id, who())
    get_run_logger().info(
        "backup %s: %s written in %.1f s", backup_id, human_size(manifest.size), manifest.duration_seconds
    )
    return manifest


@task(name="verify-and-publish", cache_policy=NO_CACHE, timeout_seconds=600)
def publish_backup(settings: Settings, manifest: Manifest) -> Manifest:
    """Check every copy's size and recorded sha256, then write the manifest.

    A permanent failure removes the copies; a transient one leaves them for the retry (unlisted until then).
    """
    dest = destinations(settings)
    catalog.check_and_publish(dest, manifest)
    get_run_logger().info("backup %s verified and listed", manifest.id)
    return manifest


@task(name="prune", cache_policy=NO_CACHE, timeout_seconds=1800)
def prune_backups(settings: Settings, dry_run: bool = False) -> list[PruneResult]:
    """Dumps and base backups: local copies older than LOCAL_RETENTION_DAYS, storage copies older than
    CLOUD_RETENTION_DAYS (and the same on the replicas); then the WAL archive back to the oldest base backup
    kept."""
    dest = destinations(settings)
    trail = audit_trail(settings, dest)
    now = datetime.now(UTC)
    storage = replicas.mirrored(dest.storage, dest.replicas, trail)  # what goes here goes on the replicas
    places = [(storage, settings.cloud_retention_days)]
    if dest.local is not None:
        places.append((dest.local, settings.local_retention_days))
    results = [
        prune(where, RetentionPolicy(days), now, trail, dry_run, kind)
        for kind in ("db", "base")
        for where, days in places
    ]
    kept = {name for result in results if result.kind == "base" for name in result.kept}
    bases = [m for where, _ in places for m in list_backups(where, ("base",)).backups if m.id in kept]
    results.append(prune_wal(storage, bases, trail, dry_run))
    for result in results:
        get_run_logger().info("prune %s %s: deleted %s", result.kind, result.location, result.deleted or "nothing")
    return results


@task(name="report-prune", cache_policy=NO_CACHE)
def report_prune(
    settings: Settings, results: list[PruneResult], dry_run: bool, error: BaseException | None = None
) -> None:
    """The prune's artifact; a failure is notified too (what was deleted before it is in the audit trail)."""
    if error is None:
        tell(settings, "prune-backups", report_files.backups_pruned(results, dry_run), send=False)
    else:
        told = report.Report(
            title="Prune FAILED",
            ok=False,
            summary=f"Applying retention failed: {error}\nEvery deletion before the error is in the audit trail.",
            next_step="fix the cause above and run `sppg-backup prune --dry-run`, then `sppg-backup prune`",
        )
        tell(settings, "prune-backups", told)


@task(name="notify-success", cache_policy=NO_CACHE)
def report_success(settings: Settings, manifest: Manifest, pruned: list[PruneResult]) -> None:
    """Audit, metrics, artifact, notification: the backup is already listed, so none of these may fail it."""
    dest = destinations(settings)
    where = dest.storage.describe(manifest.data_key)
    details = {"size": manifest.size, "sha256": manifest.sha256, "location": where}
    measures = {
        "backup_last_success_timestamp": manifest.finished_at.timestamp(),
        "backup_duration_seconds": manifest.duration_seconds,
        "backup_file_size_bytes": manifest.size,
        "backup_previous_file_size_bytes": previous_size(dest.storage, manifest),
        "backup_last_run_success": 1,
    }
    tell(
        settings,
        "backup-database",
        report.backup_succeeded(manifest, where, settings.zone, pruned),
        Entry("backup", manifest.id, "ok", {**details, "duration_seconds": manifest.duration_seconds}),
        Measures({"kind": "db"}, measures),
    )


@task(name="notify-failure", cache_policy=NO_CACHE)
def report_failure(settings: Settings, error: BaseException, listed: Manifest | None = None) -> None:
    """Failure notification, metrics and audit record; none of these may hide the original error."""
    try:
        database = parse(settings.database_url)[0].database
    except BackupError:
        database = "(unparsable SPPG_BACKUP_DATABASE_URL)"
    tell(
        settings,
        "backup-database",
        report.backup_failed(error, database, settings.storage_url, listed),
        Entry("backup", listed.id if listed else "-", "failed", {"error": str(error)}, to_storage=False),
        Measures(
            {"kind": "db"},
            {"backup_last_failure_timestamp": datetime.now(UTC).timestamp(), "backup_last_run_success": 0},
        ),
    )


def summary(manifest: Manifest) -> dict[str, Any]:
    return manifest.model_dump(mode="json")
