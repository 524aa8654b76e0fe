"""Tasks of restore-database: plan, safety backup, services, download, restore, verify, report."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID
from pydantic import BaseModel, Field

from sppg_backup import backup, docker_services, drill, growing, notify, postgres, recovery, restore
from sppg_backup.catalog import Manifest
from sppg_backup.errors import CheckFailed
from sppg_backup.settings import Settings
from tasks.common import audit_trail, destinations, retrying, who
from tasks.verify import fetch_archive


class RestoreRequest(BaseModel):
    """What the on-call engineer fills in (the Prefect UI shows these fields as a form)."""

    backup_id: str | None = Field(
        default=None,
        description="Backup to restore, e.g. erp_sppg_backup_20261124_200000; empty: the newest usable one",
    )
    before: datetime | None = Field(default=None, description="Restore the newest backup made before this time")
    target_url: str | None = Field(
        default=None,
        description="Database to restore into (postgresql://user@host:port/db); "
        "empty: SPPG_BACKUP_DATABASE_URL. The password is taken from the settings when "
        "the login matches, so it need not be typed here",
    )
    stop_services: list[str] | None = Field(
        default=None,
        description="Docker containers or Compose services to stop during the restore; empty: SPPG_BACKUP_SERVICES",
    )
    confirm: bool = Field(default=False, description="Required to restore over a database that has connections or data")
    safety_backup: bool = Field(default=True, description="Back up the current target database first")
    dry_run: bool = Field(default=False, description="Only show the plan; change nothing")


def target_url(settings: Settings, request: RestoreRequest) -> str:
    """The target's URL; a target on the same server and login borrows the configured password."""
    if not request.target_url:
        return settings.database_url
    wanted, params = postgres.parse(request.target_url)
    known, known_params = postgres.parse(settings.database_url)
    same_login = (wanted.host, wanted.port, wanted.user) == (known.host, known.port, known.user)
    if "password" not in params and same_login and known_params.get("password"):
        return postgres.with_database(settings.database_url, wanted.database)
    return request.target_url


def services_of(settings: Settings, request: RestoreRequest) -> list[str]:
    return list(request.stop_services) if request.stop_services is not None else list(settings.services)


@task(name="plan-restore", cache_policy=NO_CACHE, timeout_seconds=300)
def plan_restore(settings: Settings, request: RestoreRequest) -> recovery.RestorePlan:
    """Choose the backup, inspect the target, check the services exist; refuse without confirmation."""
    manifest = recovery.choose_backup(destinations(settings).storage, request.backup_id, request.before)
    names = services_of(settings, request)
    if names:
        docker_services.resolve(docker_services.connect(), names)  # an unknown name fails before anything stops
    plan = recovery.plan(manifest, recovery.inspect_target(target_url(settings, request)), names, request.safety_backup)
    for line in plan.describe(settings.zone):
        get_run_logger().info("plan: %s", line)
    if plan.needs_confirmation and not request.confirm and not request.dry_run:
        raise CheckFailed(
            "confirmation",
            f"{plan.target.label} has {plan.target.tables} tables and "
            f"{plan.target.connections} connections; restoring over it needs --yes (confirm=true)",
        )
    return plan


@task(name="safety-backup", cache_policy=INPUTS + RUN_ID, persist_result=True)
def take_safety_backup(settings: Settings, url: str, plan: recovery.RestorePlan) -> Manifest:
    """Back up the target as it is now; a retried run reuses this one instead of taking another."""
    target = settings.model_copy(update={"database_url": url})
    dest = destinations(target)
    backup_id = backup.reserve_id(dest.storage, datetime.now(UTC))
    manifest = backup.dump(
        target,
        dest,
        backup_id,
        who(),
        purpose="safety",
        note=f"state of {plan.target.database} before restoring {plan.backup_id}",
    )
    backup.check_copies(dest, manifest)
    backup.publish(dest, manifest)
    get_run_logger().info("safety backup %s of %s stored", manifest.id, plan.target.label)
    return manifest


@task(name="stop-services", cache_policy=NO_CACHE, timeout_seconds=600)
def stop_services(settings: Settings, names: list[str]) -> list[docker_services.Service]:
    client = docker_services.connect()
    services = docker_services.resolve(client, names)
    docker_services.stop(client, services, settings.service_stop_timeout_seconds)
    get_run_logger().info("stopped %s", ", ".join(s.container_name for s in services if s.was_running))
    return services


@task(name="start-services", cache_policy=NO_CACHE, timeout_seconds=900)
def start_services(settings: Settings, services: list[docker_services.Service]) -> None:
    docker_services.start(docker_services.connect(), services, settings.service_start_timeout_seconds)
    get_run_logger().info("running again: %s", ", ".join(s.container_name for s in services if s.was_running))


def start_again(settings: Settings, services: list[docker_services.Service]) -> str:
    """Start the stopped services after a failure; a failure here must not hide the first one."""
    try:
        start_services(settings, services)
    except Exception as exc:
        get_run_logger().error("could not start the services again: %s", exc)
        return f"The services could NOT be started again: {exc}"
    return "Services were started again."


def restore_folder(settings: Settings, *parts: str) -> Path:
    """Where restores keep their downloads (SCRATCH_DIR, else the system temp): sppg-restore/PARTS, private."""
    folder = (settings.scratch_dir or Path(tempfile.gettempdir())).joinpath("sppg-restore", *parts)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def archive_path(settings: Settings, backup_id: str) -> Path:
    return restore_folder(settings) / f"{backup_id}.dump"


@task(name="download-backup", cache_policy=INPUTS + RUN_ID, persist_result=True)
def download_backup(settings: Settings, manifest: Manifest) -> str:
    """Download, check sha256, decrypt, decompress; a retried run reuses the file when it is still there."""
    archive = archive_path(settings, manifest.id)
    fetch_archive.fn(settings, manifest, archive)
    return str(archive)


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


def download_and_restore(settings: Settings, url: str, manifest: Manifest, keep_old: bool) -> tuple[str, str | None]:
    """Run download-backup and restore-into-target at once: tables load while the backup still downloads.

    A retried flow run finds the download Cached and restores from the file it left. Returns the archive's
    path and the name the replaced database is kept under.
    """
    archive = archive_path(settings, manifest.id)
    grown = growing.expect(archive)
    try:
        downloading = retrying(download_backup, settings).submit(settings, manifest)
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
        return str(archive), restoring.result()
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
    client = docker_services.connect()
    found = docker_services.error_lines(client, docker_services.resolve(client, names))
    for container, lines in found.items():
        get_run_logger().warning("%s: %d error lines%s", container, len(lines), (": " + lines[-1]) if lines else "")
    return found


@task(name="choose-newest-verified", cache_policy=NO_CACHE, timeout_seconds=300)
def newest_verified(settings: Settings) -> str:
    return recovery.choose_backup(destinations(settings).storage, verified_only=True).id


@task(name="notify-restore", cache_policy=NO_CACHE)
def report_restore(
    settings: Settings,
    plan: recovery.RestorePlan,
    safety: Manifest | None,
    error: BaseException | None,
    kept: str | None = None,
) -> None:
    safety_text = f"Safety backup of the previous state: {safety.id}." if safety else "No safety backup was taken."
    if error is None:
        title = f"Restore OK: {plan.backup_id} into {plan.target.database}"
        body = (
            f"Backup {plan.backup_id} was restored into {plan.target.label}; every table has the backup's row "
            f"count. {safety_text}" + (f" The replaced database is kept as {kept}." if kept else "")
        )
    else:
        title = f"Restore FAILED: {plan.backup_id} into {plan.target.database}"
        body = (
            f"The restore failed: {error}\n{safety_text} Services were started again.\n"
            f"Next step: fix the cause and run the restore again (retry the flow run in the Prefect UI: "
            f"finished steps are not repeated); to go back, restore {safety.id if safety else 'the safety backup'}."
        )
    audit_trail(settings, destinations(settings)).record(
        "restore",
        plan.backup_id,
        "ok" if error is None else "failed",
        database=plan.target.label,
        safety_backup=safety.id if safety else None,
        error=str(error) if error else None,
    )
    notify.send(settings.notify_urls, title, body, ok=error is None)


@task(name="clean-up", cache_policy=NO_CACHE)
def remove_archive(archive: str) -> None:
    Path(archive).unlink(missing_ok=True)


def summary(plan: recovery.RestorePlan, safety: Manifest | None, kept: str | None) -> dict[str, Any]:
    return {
        **plan.model_dump(mode="json", exclude={"manifest"}),
        "safety_backup_id": safety.id if safety else None,
        "replaced_database_kept_as": kept,
        "status": "restored",
    }
