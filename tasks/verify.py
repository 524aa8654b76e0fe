"""Tasks of verify-backup and recovery-drill: find, check, fetch, list, restore, compare, record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db import restore, verify
from sppg_backup.db.catalog import Manifest
from sppg_backup.display import human_size
from sppg_backup.errors import CheckFailed
from sppg_backup.ops import report
from sppg_backup.physical import check as physical_check
from sppg_backup.settings import Settings
from sppg_backup.stream import crypto, growing
from sppg_backup.tasks.common import destinations
from sppg_backup.tasks.reporting import Entry, Measures, tell


def server_url(settings: Settings) -> str:
    """Where test restores go: SPPG_BACKUP_VERIFY_DATABASE_URL, else the backed-up database's server."""
    return settings.verify_database_url or settings.database_url


@task(name="find-backup", cache_policy=NO_CACHE, timeout_seconds=300)
def find_backup(settings: Settings, backup_id: str | None) -> Manifest:
    manifest = verify.find_backup(destinations(settings).storage, backup_id)
    get_run_logger().info("backup %s: manifest found", manifest.id)
    return manifest


@task(name="check-size", cache_policy=NO_CACHE, timeout_seconds=300)
def check_stored(settings: Settings, manifest: Manifest) -> None:
    size = verify.check_stored(destinations(settings).storage, manifest, settings.min_backup_size)
    get_run_logger().info("backup %s: %s stored, as recorded", manifest.id, human_size(size))


def identities_for(settings: Settings, manifest: Manifest) -> list[Any]:
    """The private keys that open this backup; a ConfigError (a setting to fix) when none can."""
    if manifest.encryption != "age":
        return []
    identities = crypto.identities_from(settings.age_identity_file)
    crypto.check_identities(identities, manifest.recipients, f"backup {manifest.id}")
    return identities


def fetch(settings: Settings, manifest: Manifest, archive: Path) -> None:
    """The backup's plain archive at `archive` (readers of a growing file follow it while it is written)."""
    identities = identities_for(settings, manifest)
    restore.fetch_dump(destinations(settings).storage, manifest, identities, archive, growing.find(archive))


@task(name="download-decrypt-decompress", cache_policy=NO_CACHE)
def fetch_archive(settings: Settings, manifest: Manifest, archive: Path) -> None:
    """Download, check sha256, decrypt with AGE_IDENTITY_FILE and decompress in one pass."""
    fetch(settings, manifest, archive)
    get_run_logger().info("backup %s: sha256 matches, decrypted and decompressed", manifest.id)


@task(name="pg-restore-list", cache_policy=NO_CACHE, timeout_seconds=600)
def list_archive(settings: Settings, archive: Path) -> int:
    entries = restore.list_archive(archive, restore.pg_restore_tool(server_url(settings), settings.pg_bin_dir))
    get_run_logger().info("pg_restore --list reads %d entries", entries)
    return entries


@task(name="test-restore", cache_policy=NO_CACHE)
def test_restore(settings: Settings, manifest: Manifest, archive: Path) -> None:
    """Restore into a temporary database (dropped afterwards even when a step fails) and compare row counts."""
    url = server_url(settings)
    pg_restore = restore.pg_restore_tool(url, settings.pg_bin_dir)
    with restore.scratch_database(url, "verify") as scratch:
        restore.restore_archive(scratch, archive, pg_restore, settings.restore_jobs)
        restore.compare_rows(scratch, manifest.tables)
    get_run_logger().info(
        "backup %s: restored; %d tables with the recorded row counts", manifest.id, len(manifest.tables)
    )


@task(name="record-verification", cache_policy=NO_CACHE)
def record_verification(
    settings: Settings, manifest: Manifest | None, failure: CheckFailed | None, started: datetime
) -> dict[str, object]:
    """Store the result with the manifest, set backup_verification_status, audit, artifact, notify on failure."""
    finished = datetime.now(UTC)
    kind = manifest.kind if manifest else "db"
    result = verify.outcome(failure, started, finished, physical_check.CHECKS if kind == "base" else verify.CHECKS)
    backup_id = manifest.id if manifest else "-"
    problems = []
    if manifest is not None:
        try:
            verify.record(destinations(settings).all, manifest, result)
        except Exception as exc:  # told below all the same; never hides the verdict itself
            get_run_logger().error("cannot store the verification result with %s: %s", backup_id, exc)
            problems.append(f"the result is not stored with the backup's manifest ({exc})")
    measures = {
        "backup_verification_status": 0 if failure else 1,
        "backup_last_verification_timestamp": finished.timestamp(),
    }
    tell(
        settings,
        "verify-backup",
        report.verification_report(backup_id, result, settings.storage_url, settings.zone),
        Entry("verify", backup_id, result.status, {"check": result.check, "detail": result.detail}),
        Measures({"kind": kind}, measures),
        send=failure is not None,
        problems=problems,
    )
    return {"backup_id": backup_id, **result.model_dump(mode="json")}


@task(name="report-verify-error", cache_policy=NO_CACHE)
def report_verify_error(settings: Settings, manifest: Manifest | None, error: BaseException) -> None:
    """The run failed before judging the backup (its key, scratch space, server): told, audited, and the backup's
    record left as it was."""
    backup_id = manifest.id if manifest else "-"
    step = (
        f"fix the cause above and run `sppg-backup verify {manifest.id}`; the backup itself was not judged and "
        "keeps its verification status"
        if manifest
        else "fix the cause above and run `sppg-backup verify --latest`"
    )
    entry = Entry("verify", backup_id, "error", {"detail": str(error)})
    tell(settings, "verify-backup", report.run_failed("Verification", error, step), entry)
