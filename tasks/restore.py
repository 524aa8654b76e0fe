"""Tasks of restore-database: plan, safety backup, services, download, restore, verify, report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db import catalog, drill, dump, postgres, recovery, restore
from sppg_backup.db.catalog import Manifest, read_manifest
from sppg_backup.db.recovery import RestoreRequest
from sppg_backup.errors import CheckFailed, NotFoundError
from sppg_backup.ops import containers, report, scratch, stopped
from sppg_backup.settings import Settings
from sppg_backup.stream import growing
from sppg_backup.tasks.common import destinations, keyed_on, retrying, who
from sppg_backup.tasks.pitr_replace import undo_abandoned
from sppg_backup.tasks.reporting import Entry, tell
from sppg_backup.tasks.verify import fetch, identities_for


def target_url(settings: Settings, request: RestoreRequest) -> str:
    return recovery.target_url(settings.database_url, request.target_url, settings.target_password)


@task(name="plan-restore", cache_policy=NO_CACHE, timeout_seconds=300)
def plan_restore(settings: Settings, request: RestoreRequest) -> recovery.RestorePlan:
    """Choose the backup, inspect the target, check the services exist; refuse without confirmation."""
    manifest = recovery.choose_backup(destinations(settings).storage, request.backup_id, request.before)
    identities_for(settings, manifest)  # a wrong or missing key fails before anything changes
    names = request.services(settings.services)
    if names:
        containers.resolve(containers.connect(), names)  # an unknown name fails before anything stops
    reason = recovery.choice_reason(request.backup_id, request.before, False, settings.zone)
    target = recovery.inspect_target(target_url(settings, request))
    plan = recovery.plan(manifest, target, names, request.safety_backup, reason)
    for line in plan.describe(settings.zone):
        get_run_logger().info("plan: %s", line)
    if not request.dry_run:
        recovery.require_confirmation(plan, request.confirm)
    return plan


def target_of(parameters: dict[str, Any]) -> str:
    """host:port/database of the restore's target (never its password)."""
    return postgres.parse(parameters["url"])[0].label


@task(
    name="safety-backup",
    cache_key_fn=keyed_on(target_of, lambda p: p["plan"].backup_id),
    persist_result=True,
)
def safety_backup(settings: Settings, url: str, plan: recovery.RestorePlan) -> Manifest:
    """Back up the target as it is now; a retried run reuses this one instead of taking another."""
    target = settings.model_copy(update={"database_url": url})
    dest = destinations(target)
    backup_id = dump.reserve_id(dest.storage, datetime.now(UTC))
    manifest = dump.dump(
        target,
        dest,
        backup_id,
        who(),
        purpose="safety",
        note=f"state of {plan.target.database} before restoring {plan.backup_id}",
    )
    catalog.check_copies(dest, manifest)
    catalog.publish(dest, manifest)
    get_run_logger().info("safety backup %s of %s stored", manifest.id, plan.target.label)
    return manifest


def take_safety_backup(settings: Settings, url: str, plan: recovery.RestorePlan) -> Manifest:
    """The safety backup of this run: the one taken before a retry, unless it is no longer in storage."""
    manifest = safety_backup(settings, url, plan)
    try:
        read_manifest(destinations(settings).storage, "db", manifest.id)
    except NotFoundError:
        get_run_logger().warning("safety backup %s is gone from storage: taking it again", manifest.id)
        manifest = safety_backup.with_options(refresh_cache=True)(settings, url, plan)
    return manifest


@task(name="stop-services", cache_policy=NO_CACHE, timeout_seconds=600)
def stop_services(settings: Settings, names: list[str]) -> list[containers.Service]:
    client = containers.connect()
    services = containers.resolve(client, names)
    written = stopped.record(settings.state_dir, services)  # before the first stop: a kill leaves it behind
    try:
        containers.stop(client, services, settings.service_stop_timeout_seconds)
    except BaseException:
        stopped.clear(written)  # stop() started again the ones it had stopped
        raise
    get_run_logger().info("stopped %s", ", ".join(s.container_name for s in services if s.was_running))
    return services


@task(name="start-services", cache_policy=NO_CACHE, timeout_seconds=900)
def start_services(settings: Settings, services: list[containers.Service]) -> None:
    containers.start(containers.connect(), services, settings.service_start_timeout_seconds)
    stopped.clear_mine(settings.state_dir, services)
    get_run_logger().info("running again: %s", ", ".join(s.container_name for s in services if s.was_running))


@task(name="start-left-stopped", cache_policy=NO_CACHE, timeout_seconds=900)
def start_left_stopped(settings: Settings) -> list[str]:
    """Start what an earlier run stopped and, killed, never started again; the names started. Never fails the
    restore it comes before: what cannot be started stays recorded, and `status` keeps saying so."""
    started: list[str] = []
    try:  # a data swap a killed `restore pitr --replace` left half-done is undone before its database starts
        for said in undo_abandoned(settings):
            get_run_logger().warning("%s", said)
    except Exception as exc:
        get_run_logger().error("a data swap left by a killed run cannot be finished: %s", exc)
        return started  # its database stays stopped: starting it on half its data would be worse
    for left in stopped.abandoned(settings.state_dir):
        try:
            client = containers.connect()
            present = containers.still_there(client, left.services)
            containers.start(client, present, settings.service_start_timeout_seconds)
        except Exception as exc:
            get_run_logger().error("services %s, stopped by an earlier run, do not start: %s", left.names, exc)
            continue
        stopped.clear(left.path)
        gone = {s.container_name for s in left.services} - {s.container_name for s in present}
        if gone:
            get_run_logger().warning("services stopped by an earlier run no longer exist: %s", ", ".join(sorted(gone)))
        if present:
            get_run_logger().warning("started %s again: stopped by a run that ended without starting them", left.names)
        started += [s.container_name for s in present if s.was_running]
    return started


def start_again(settings: Settings, services: list[containers.Service]) -> str:
    """Start the stopped services after a failure; a failure here must not hide the first one."""
    try:
        start_services(settings, services)
    except Exception as exc:
        get_run_logger().error("could not start the services again: %s", exc)
        return f"The services could NOT be started again: {exc}"
    return "Services were started again."


@task(
    name="download-backup",
    cache_key_fn=keyed_on(lambda p: p["manifest"].id, lambda p: p["manifest"].sha256, lambda p: p["archive"]),
    persist_result=True,
)
def download_backup(settings: Settings, manifest: Manifest, archive: str) -> str:
    """Download, check sha256, decrypt, decompress; seal the file, so a retried run can tell it is still whole."""
    fetch(settings, manifest, Path(archive))
    scratch.seal(Path(archive))
    return archive


@task(name="restore-into-target", cache_policy=NO_CACHE)
def restore_into_target(settings: Settings, url: str, manifest: Manifest, archive: str, keep_old: bool) -> str | None:
    """pg_restore -j into a new database (following the archive while it downloads), compare row counts with
    the manifest, then swap it in."""
    path = Path(archive)
    grown = growing.find(path)
    if grown is None and not path.exists():
        raise gone(path)
    pg_restore = restore.pg_restore_tool(postgres.with_database(url, "postgres"), settings.pg_bin_dir)
    kept = recovery.restore_replacing(url, path, manifest, pg_restore, settings.restore_jobs, keep_old, grown)
    get_run_logger().info(
        "restored %s into %s%s",
        manifest.id,
        postgres.parse(url)[0].label,
        f"; the old database is kept as {kept}" if kept else "",
    )
    return kept


def gone(archive: Path) -> CheckFailed:
    return CheckFailed("download", f"the downloaded archive {archive} is gone; run the restore again")


def download_and_restore(settings: Settings, url: str, manifest: Manifest, keep_old: bool, folder: Path) -> str | None:
    """Run download-backup and restore-into-target at once: tables load while the backup still downloads.

    A retried flow run finds the download Cached and restores from the file it left; when that file is gone or
    changed, the cached result is not used and the backup is downloaded again. Returns the name the replaced
    database is kept under.
    """
    archive = folder / f"{manifest.id}.dump"
    download = retrying(download_backup, settings)
    if not scratch.is_sealed(archive):
        download = download.with_options(refresh_cache=True)
    grown = growing.expect(archive)
    try:
        downloading = download.submit(settings, manifest, str(archive))
        restoring = restore_into_target.submit(settings, url, manifest, str(archive), keep_old)
        try:
            downloading.result()
            if not archive.exists():
                raise gone(archive)
            grown.finish()
        except BaseException as exc:
            grown.fail(exc)
            restoring.wait()
            raise
        return restoring.result()  # type: ignore[no-any-return]
    finally:
        growing.forget(archive)


@task(name="verify-restore", cache_policy=NO_CACHE, timeout_seconds=600)
def verify_restore(settings: Settings, url: str, manifest: Manifest) -> None:
    """The guide's step 4: the tables are there with the backup's row counts, and the smoke checks
    (DRILL_CHECKS; by default the guide's users count) pass."""
    restore.compare_rows(url, manifest.tables)
    failed = [r for r in drill.run_smoke_checks(url, settings.drill_checks) if not r.passed]
    if failed:
        raise CheckFailed("verify", "; ".join(f"{r.name}: got {r.got}, expected {r.expect}" for r in failed))
    get_run_logger().info(
        "verified: %d tables with the backup's row counts; %s",
        len(manifest.tables),
        ", ".join(c.name for c in settings.drill_checks) or "no smoke checks",
    )


@task(name="find-errors-in-logs", cache_policy=NO_CACHE, timeout_seconds=300)
def find_errors(names: list[str]) -> dict[str, list[str]]:
    """The guide's step 1: docker-compose logs backend-1 | grep -i error."""
    client = containers.connect()
    found = containers.error_lines(client, containers.resolve(client, names))
    for container, lines in found.items():
        get_run_logger().warning("%s: %d error lines%s", container, len(lines), (": " + lines[-1]) if lines else "")
    return found


@task(name="choose-newest-verified", cache_policy=NO_CACHE, timeout_seconds=300)
def newest_verified(settings: Settings) -> str:
    return recovery.choose_backup(destinations(settings).storage, verified_only=True).id


def wanted(settings: Settings, request: RestoreRequest) -> str:
    """The backup and target as requested, for a failure before anything was chosen."""
    which = request.backup_id or (f"the newest backup before {request.before}" if request.before else "the newest")
    return f"{which} into {postgres.parse(target_url(settings, request))[0].label}"


@task(name="report-restore", cache_policy=NO_CACHE)
def report_restore(
    settings: Settings,
    request: RestoreRequest,
    plan: recovery.RestorePlan | None,
    safety: Manifest | None = None,
    kept: str | None = None,
    error: BaseException | None = None,
    services: str | None = None,
) -> dict[str, Any]:
    """The outcome as the run's artifact, the notification and the flow's result; audited unless a dry run."""
    if error is not None:
        text = report.restore_failed(plan, wanted(settings, request), error, safety, services, settings.zone)
    elif plan is not None and request.dry_run:
        text = report.restore_planned(plan, settings.zone)
    else:
        assert plan is not None
        text = report.restore_succeeded(plan, safety, kept, settings.zone)
    entry = Entry(
        "restore",
        plan.backup_id if plan else (request.backup_id or "-"),
        "ok" if error is None else "failed",
        {
            "database": plan.target.label if plan else None,
            "safety_backup": safety.id if safety else None,
            "error": str(error) if error else None,
        },
    )
    audited = entry if not request.dry_run or error is not None else None
    tell(settings, "restore-database", text, audited, send=not request.dry_run)
    return {
        **(plan.model_dump(mode="json", exclude={"manifest"}) if plan else {}),
        "safety_backup_id": safety.id if safety else None,
        "replaced_database_kept_as": kept,
        "status": "failed" if error else ("dry run" if request.dry_run else "restored"),
        "steps": plan.describe(settings.zone) if plan else [],
        "report": text.text(),
    }


@task(name="report-recovery", cache_policy=NO_CACHE)
def report_corruption(
    settings: Settings,
    errors: dict[str, list[str]],
    result: dict[str, Any] | None,
    error: BaseException | None,
    dry_run: bool,
) -> None:
    """The scenario's artifact; a failure is notified (a success was, by the restore-database run it started)."""
    told = report.corruption_recovery(errors, result, error, dry_run)
    tell(settings, "recover-database-corruption", told, send=error is not None)
