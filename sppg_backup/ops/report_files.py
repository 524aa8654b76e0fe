"""Reports of the uploads, configuration and full-system flows, and of both prunes (see report.Report)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sppg_backup.db.prune import PruneResult
from sppg_backup.display import human_size, shown_time
from sppg_backup.files.restore import RestoredFiles
from sppg_backup.files.retention import SnapshotPruneResult
from sppg_backup.files.snapshots import Snapshot, SnapshotKind
from sppg_backup.full.recover import CHECKLIST
from sppg_backup.ops.report import Report

NAMES = {"files": "Uploads", "config": "Configuration"}


def snapshot_taken(kind: SnapshotKind, snap: Snapshot | None, zone: ZoneInfo) -> Report:
    what = NAMES[kind]
    if snap is None:
        return Report(
            title=f"{what} unchanged: no snapshot needed",
            ok=True,
            summary="Nothing changed since the last snapshot, so none was taken; the last one is current.",
            next_step="nothing",
        )
    skipped = "\n".join(f"- `{s.path}`: {s.reason}" for s in snap.skipped[:50])
    return Report(
        title=f"{what} snapshot {snap.id}"
        + (f": {len(snap.skipped)} files skipped" if snap.skipped else f": {snap.files} files"),
        ok=not snap.skipped,
        summary=f"{what} snapshot {snap.id} taken at {shown_time(snap.created_at, zone)} from "
        f"{', '.join(snap.sources)}.",
        facts=(
            ("files", f"{snap.files} ({human_size(snap.bytes)}), {snap.dirs} folders, {snap.symlinks} links"),
            ("uploaded", f"{snap.uploaded_blobs} new contents ({human_size(snap.uploaded_bytes)})"),
            ("duration", f"{snap.duration_seconds:.1f} s"),
            ("skipped", str(len(snap.skipped))),
        ),
        next_step="fix the permissions of the skipped files; the next run takes them" if snap.skipped else "nothing",
        details=f"## Skipped\n\n{skipped}\n" if skipped else "",
    )


def snapshot_failed(kind: SnapshotKind, error: BaseException, action: str = "backup") -> Report:
    what = NAMES[kind]
    if action == "prune":
        return Report(
            title=f"{what} prune FAILED",
            ok=False,
            summary=f"Pruning the {kind} snapshots failed: {error}\nNothing more was deleted after the error.",
            next_step="fix the cause above; the next daily prune (or `sppg-backup prune --kind files`) goes on",
        )
    return Report(
        title=f"{what} backup FAILED",
        ok=False,
        summary=f"The {kind} snapshot failed: {error}\nNothing was listed; the earlier snapshots are unchanged.",
        next_step=f"fix the cause above; the next scheduled run (or `sppg-backup backup {kind}`) takes the snapshot",
    )


def _chosen(snapshot_id: str | None, as_of: datetime | None, zone: ZoneInfo) -> str:
    if snapshot_id:
        return "named in the request"
    return f"the newest taken at or before {shown_time(as_of, zone)}" if as_of else "the newest"


def files_restored(
    kind: SnapshotKind, result: RestoredFiles, path: str | None, as_of: datetime | None, named: bool, zone: ZoneInfo
) -> Report:
    step = (
        "restart the services so they read the restored configuration (docker-compose -f docker-compose.prod.yml "
        "restart)"
        if kind == "config"
        else f"check the files in {result.target}"
    )
    return Report(
        title=f"{NAMES[kind]} restore OK: {result.snapshot}",
        ok=True,
        summary=f"{result.files} files ({human_size(result.bytes)}) of {result.snapshot} restored into "
        f"{result.target}.",
        facts=(
            ("snapshot", result.snapshot),
            ("chosen because", _chosen(result.snapshot if named else None, as_of, zone)),
            ("path", path or "everything"),
            ("restored", f"{result.files} files, {result.dirs} folders, {result.symlinks} links"),
            ("already there", f"{result.already_there} identical files left as they were"),
        ),
        next_step=step,
    )


def files_restore_failed(kind: SnapshotKind, wanted: str, target: str, error: BaseException) -> Report:
    return Report(
        title=f"{NAMES[kind]} restore FAILED",
        ok=False,
        summary=f"The {kind} restore failed: {error}",
        facts=(("requested", wanted), ("target", target)),
        next_step="fix the cause above and run the restore again: files already restored are identical and not in "
        "the way; files that were there before are kept unless overwrite is ticked",
    )


PRUNED = {"db": "dumps", "base": "base backups", "wal": "WAL archive"}


def _pruned(result: PruneResult, verb: str) -> tuple[str, str]:
    names = result.deleted
    if result.kind == "wal" and len(names) > 3:
        shown = f"{len(names)} WAL files, {names[0]} .. {names[-1]}"
    else:
        shown = ", ".join(names) or "nothing"
    return f"{result.location} ({PRUNED.get(result.kind, result.kind)})", f"{verb}: {shown}; kept: {len(result.kept)}"


def backups_pruned(results: list[PruneResult], dry_run: bool) -> Report:
    deleted = sum(len(r.deleted) for r in results if r.kind != "wal")
    verb = "would be deleted" if dry_run else "deleted"
    reasons = "\n".join(f"| {name} | {why} |" for r in results for name, why in sorted(r.reasons.items()))
    return Report(
        title=f"Prune{' (dry run)' if dry_run else ''}: {deleted} backups {verb}",
        ok=True,
        summary=("Nothing was deleted (dry run). " if dry_run else "")
        + "Retention keeps the newest good backup, every backup a full-system set needs, and whatever is younger "
        "than the retention days; the WAL archive goes back to the oldest base backup kept.",
        facts=tuple(_pruned(r, verb) for r in results),
        next_step="to delete them, run it again with dry_run off (`sppg-backup prune`)"
        if dry_run and any(r.deleted for r in results)
        else "nothing",
        details=f"## Why each backup is kept or deleted\n\n| backup | reason |\n|---|---|\n{reasons}\n"
        if reasons
        else "",
    )


def snapshots_pruned(result: SnapshotPruneResult, dry_run: bool) -> Report:
    verb = "would be deleted" if dry_run else "deleted"
    reasons = "\n".join(f"| {name} | {why} |" for name, why in sorted(result.reasons.items()))
    return Report(
        title=f"{NAMES[result.kind]} prune{' (dry run)' if dry_run else ''}: "
        f"{len(result.deleted_snapshots)} snapshots {verb}",
        ok=True,
        summary="A snapshot goes once it is past FILES_RETENTION_DAYS and holds none of a file's last "
        "FILES_KEEP_VERSIONS versions; contents nothing refers to go with it.",
        facts=(
            ("snapshots " + verb, ", ".join(result.deleted_snapshots) or "nothing"),
            ("contents " + verb, str(len(result.deleted_objects))),
            ("snapshots kept", str(len(result.kept_snapshots))),
        ),
        next_step="to delete them, run it again with dry_run off"
        if dry_run and result.deleted_snapshots
        else "nothing",
        details=f"## Reasons\n\n| snapshot | reason |\n|---|---|\n{reasons}\n" if reasons else "",
    )


def full_system(action: str, set_id: str, error: BaseException | None, detail: str) -> Report:
    what = "Full-system backup" if action == "backup.full" else "Full-system recovery"
    if error is None:
        step = (
            "nothing; the set is kept until deleted"
            if action == "backup.full"
            else "check the application, then create any missing containers with `docker compose up -d`"
        )
        return Report(title=f"{what} OK: {set_id}", ok=True, summary=detail, facts=(("set", set_id),), next_step=step)
    step = (
        "fix the cause above and run `sppg-backup backup full` again"
        if action == "backup.full"
        else "fix the cause above, then press Retry on this flow run in the Prefect UI: downloaded parts and the "
        "database's safety backup are not repeated"
    )
    return Report(
        title=f"{what} FAILED: {set_id}",
        ok=False,
        summary=f"{what} failed: {error}" + (f"\n{detail}" if detail else ""),
        facts=(("set", set_id),),
        next_step=step,
    )


def recovery(plan: Any, result: dict[str, Any] | None, error: BaseException | None, zone: Any) -> Report:
    """recover-server's outcome: what came back from when, the RTO and RPO, and the steps left to a person."""
    if plan is None or result is None or error is not None:
        where = f" of {plan.set_id}" if plan is not None else ""
        return Report(
            title=f"Server recovery FAILED{where}",
            ok=False,
            summary=f"Recovering the server{where} failed: {error}",
            next_step="fix the cause above and run the same `sppg-backup recover server` again: what this try made "
            "(its stack and volumes, the application folder) is removed first",
        )
    database = result["database"]
    to = database.get("recovered_to")
    shown = shown_time(datetime.fromisoformat(to), zone) if to else "the end of the WAL"
    rpo = result.get("rpo_seconds")
    config = plan.settings_file
    checklist = "".join(f"- [ ] {line.format(config=config)}\n" for line in CHECKLIST)
    left = "".join(
        f"- [ ] Put back {path} by hand (outside APP_DIR: `sppg-backup restore config`).\n" for path in plan.config_left
    )
    return Report(
        title=f"Server recovered from {plan.set_id}",
        ok=True,
        summary=f"This host runs the ERP again from full-system backup {plan.set_id}, its data as at {shown} "
        f"(anything written after that is lost). Recovery took {result['rto_seconds']:.0f} s.",
        facts=(
            ("set", f"{plan.set_id}, taken {shown_time(plan.set_time, zone)}"),
            ("database", plan.database),
            ("recovered to", shown),
            ("RTO", f"{result['rto_seconds']:.1f} s (from the start of this recovery to the health check)"),
            ("RPO", f"{rpo:.0f} s before this recovery began" if rpo is not None else "unknown"),
            ("application", plan.app_dir),
            ("images", ", ".join(result["images"]) or "none"),
            ("containers", ", ".join(result["containers"]) or "none"),
            ("health", str(result["health"] or "HEALTH_URL not set: not checked")),
            ("settings", config),
        ),
        next_step="the manual steps below: DNS, then the load balancer",
        details=f"## Left to do by hand\n\n{checklist}{left}",
    )
