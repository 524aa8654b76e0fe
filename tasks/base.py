"""Tasks of backup-base: check the replication connection, pg_basebackup into storage, list it, report."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db import catalog, postgres
from sppg_backup.db.catalog import Manifest
from sppg_backup.display import human_size
from sppg_backup.errors import BackupError
from sppg_backup.ops import report
from sppg_backup.physical import base
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import destinations, who
from sppg_backup.tasks.reporting import Entry, Measures, tell


@task(name="check-replication", cache_policy=NO_CACHE, timeout_seconds=120)
def check_replication(settings: Settings) -> str:
    """The role may replicate (IDENTIFY_SYSTEM); the cluster's system identifier."""
    system = base.identify(settings.replication_target)
    get_run_logger().info("replication connection: system %s, timeline %d", system.identifier, system.timeline)
    return system.identifier


@task(name="basebackup-compress-encrypt-upload", cache_policy=NO_CACHE)  # timeout: DUMP_TIMEOUT_SECONDS
def take_base_backup(settings: Settings) -> Manifest:
    """pg_basebackup -> compress -> encrypt -> sha256 -> storage and local copy, in one streamed pass."""
    dest = destinations(settings)
    backup_id = base.reserve_id(dest.storage, datetime.now(UTC))
    get_run_logger().info("base backup %s: to %s", backup_id, ", ".join(s.url for s in dest.all))
    manifest = base.back_up(settings, dest, backup_id, who())
    get_run_logger().info(
        "base backup %s: %s written in %.1f s", backup_id, human_size(manifest.size), manifest.duration_seconds
    )
    return manifest


@task(name="verify-and-publish-base", cache_policy=NO_CACHE, timeout_seconds=600)
def publish_base(settings: Settings, manifest: Manifest) -> Manifest:
    """Every copy's size and sha256 checked, then the manifest written; a permanent failure removes the copies."""
    dest = destinations(settings)
    catalog.check_and_publish(dest, manifest)
    get_run_logger().info("base backup %s verified and listed", manifest.id)
    return manifest


@task(name="report-base", cache_policy=NO_CACHE)
def report_base(
    settings: Settings, manifest: Manifest | None, error: BaseException | None = None, send: bool = True
) -> None:
    if manifest is not None:
        where = destinations(settings).storage.describe(manifest.data_key)
        details = {"size": manifest.size, "sha256": manifest.sha256, "location": where}
        entry = Entry("backup.base", manifest.id, "ok", details)
        measures = {
            "backup_last_success_timestamp": manifest.finished_at.timestamp(),
            "backup_duration_seconds": manifest.duration_seconds,
            "backup_file_size_bytes": manifest.size,
            "backup_last_run_success": 1,
        }
        told = report.base_succeeded(manifest, where, settings.zone)
        tell(settings, "backup-base", told, entry, Measures({"kind": "base"}, measures), send=send)
        return
    try:
        server = postgres.parse(settings.replication_target)[0].label
    except BackupError:
        server = "(unparsable SPPG_BACKUP_REPLICATION_URL)"
    entry = Entry("backup.base", "-", "failed", {"error": str(error)}, to_storage=False)
    failed = {"backup_last_failure_timestamp": datetime.now(UTC).timestamp(), "backup_last_run_success": 0}
    told = report.base_failed(error or Exception("unknown"), server, settings.storage_url)
    tell(settings, "backup-base", told, entry, Measures({"kind": "base"}, failed))
