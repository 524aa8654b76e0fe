"""Tasks of the uploads and configuration flows: snapshot, restore, prune, report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.display import human_size
from sppg_backup.errors import ConfigError
from sppg_backup.files import restore, retention, snapshots
from sppg_backup.files.restore import FilesRestoreRequest
from sppg_backup.ops import replicas, report_files
from sppg_backup.settings import Settings
from sppg_backup.stream import crypto
from sppg_backup.tasks.common import audit_trail, destinations, who
from sppg_backup.tasks.reporting import Entry, Measures, tell


def identities(settings: Settings) -> list[Any]:
    """The private keys that read encrypted snapshots and backups."""
    return crypto.identities_from(settings.age_identity_file)


@task(name="take-snapshot", cache_policy=NO_CACHE)
def take_snapshot(
    settings: Settings, kind: snapshots.SnapshotKind, only_if_changed: bool = False, part_of: str | None = None
) -> snapshots.Snapshot | None:
    """Walk the files, upload new or changed content, write the index and then the manifest."""
    storage = destinations(settings).storage
    snap_id = snapshots.reserve_id(storage, kind, datetime.now(UTC))
    snap = snapshots.take(
        storage,
        kind,
        snapshots.sources(settings, kind),
        settings.require_recipients(),
        settings.state_dir,
        snap_id,
        who(),
        only_if_changed=only_if_changed,
        part_of=part_of,
    )
    log = get_run_logger()
    if snap is None:
        log.info("%s: nothing changed since the last snapshot; none taken", kind)
        return None
    log.info(
        "%s snapshot %s: %d files (%s), %d new blobs uploaded (%s)",
        kind,
        snap.id,
        snap.files,
        human_size(snap.bytes),
        snap.uploaded_blobs,
        human_size(snap.uploaded_bytes),
    )
    for skipped in snap.skipped:
        log.warning("%s: %s: skipped, %s", snap.id, skipped.path, skipped.reason)
    return snap


@task(name="notify-snapshot", cache_policy=NO_CACHE)
def report_snapshot(
    settings: Settings,
    kind: snapshots.SnapshotKind,
    snap: snapshots.Snapshot | None,
    error: BaseException | None = None,
    action: str = "backup",
) -> None:
    """Audit and metrics always; a notification on failure or when files had to be skipped."""
    status = "failed" if error else ("partial" if snap and snap.skipped else "ok")
    details = {"error": str(error) if error else None}
    entry = Entry(f"{action}.{kind}", snap.id if snap else "-", status, details, to_storage=False)
    if action != "backup":
        told = report_files.snapshot_failed(kind, error, action) if error else None
        tell(settings, f"prune-{kind}-snapshots", told, entry)
        return
    values = {"backup_last_run_success": 0.0 if error else 1.0}
    if error:
        values["backup_last_failure_timestamp"] = datetime.now(UTC).timestamp()
    else:  # a run that found nothing changed succeeded too
        values["backup_last_success_timestamp"] = (snap.finished_at if snap else datetime.now(UTC)).timestamp()
    if snap:
        values["backup_duration_seconds"] = snap.duration_seconds
    measures = Measures({"kind": kind}, values)
    # Every run leaves its artifact; only a failure or skipped files are worth a message every few minutes.
    if error:
        tell(settings, f"backup-{kind}", report_files.snapshot_failed(kind, error), entry, measures)
    else:
        tell(
            settings,
            f"backup-{kind}",
            report_files.snapshot_taken(kind, snap, settings.zone),
            entry,
            measures,
            send=bool(snap and snap.skipped),
        )


@task(name="restore-snapshot", cache_policy=NO_CACHE)
def restore_snapshot(
    settings: Settings, kind: snapshots.SnapshotKind, request: FilesRestoreRequest
) -> restore.RestoredFiles:
    if not request.target:
        raise ConfigError("no folder to restore into: give the target (e.g. /tmp/restored)")
    storage = destinations(settings).storage
    snap = snapshots.choose(storage, kind, request.snapshot_id, request.as_of)
    result = restore.restore(
        storage,
        snap,
        identities(settings),
        Path(request.target),
        request.path,
        request.overwrite,
        settings.restore_setid_bits,
    )
    get_run_logger().info(
        "restored %d files (%s) of %s into %s", result.files, human_size(result.bytes), snap.id, request.target
    )
    return result


@task(name="report-restore", cache_policy=NO_CACHE)
def report_restore(
    settings: Settings,
    kind: snapshots.SnapshotKind,
    request: FilesRestoreRequest,
    result: restore.RestoredFiles | None,
    error: BaseException | None = None,
) -> None:
    entry = Entry(
        f"restore.{kind}",
        result.snapshot if result else (request.snapshot_id or "-"),
        "failed" if error else "ok",
        {"into": request.target, "path": request.path, "error": str(error) if error else None},
    )
    if error is not None:
        wanted = request.snapshot_id or (f"the newest as of {request.as_of}" if request.as_of else "the newest")
        wanted += f" ({request.path or 'everything'})"
        told = report_files.files_restore_failed(kind, wanted, request.target or "(no target)", error)
    else:
        assert result is not None
        told = report_files.files_restored(
            kind, result, request.path, request.as_of, request.snapshot_id is not None, settings.zone
        )
    tell(settings, f"restore-{kind}", told, entry)


@task(name="report-prune", cache_policy=NO_CACHE)
def report_prune(settings: Settings, result: retention.SnapshotPruneResult, dry_run: bool) -> None:
    tell(settings, f"prune-{result.kind}-snapshots", report_files.snapshots_pruned(result, dry_run), send=False)


@task(name="prune-snapshots", cache_policy=NO_CACHE, timeout_seconds=3600)
def prune_snapshots(settings: Settings, dry_run: bool = False) -> retention.SnapshotPruneResult:
    """Snapshots past FILES_RETENTION_DAYS go unless they hold one of a file's last FILES_KEEP_VERSIONS versions."""
    dest = destinations(settings)
    trail = audit_trail(settings, dest)
    result = retention.prune(
        replicas.mirrored(dest.storage, dest.replicas, trail),  # what goes here goes on the replicas
        "files",
        identities(settings),
        datetime.now(UTC),
        settings.files_retention_days,
        settings.files_keep_versions,
        trail,
        dry_run,
    )
    get_run_logger().info(
        "files: %s %d snapshots and %d unreferenced blobs; kept %d snapshots",
        "would delete" if dry_run else "deleted",
        len(result.deleted_snapshots),
        len(result.deleted_objects),
        len(result.kept_snapshots),
    )
    return result
