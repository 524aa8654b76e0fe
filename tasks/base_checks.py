"""Tasks of verify-base-backup and the point-in-time drill: find, unpack, pg_verifybackup, start, stop."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db.catalog import Manifest
from sppg_backup.display import shown_time
from sppg_backup.errors import CheckFailed
from sppg_backup.ops.report import Report
from sppg_backup.physical import check, pitr
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import destinations
from sppg_backup.tasks.pitr import server_bin
from sppg_backup.tasks.reporting import tell
from sppg_backup.tasks.verify import identities_for


@task(name="find-base-backup", cache_policy=NO_CACHE, timeout_seconds=300)
def find_base(settings: Settings, backup_id: str | None) -> Manifest:
    manifest = check.find_base(destinations(settings).storage, backup_id)
    get_run_logger().info("base backup %s: manifest found", manifest.id)
    return manifest


@task(name="open-scratch-folder", cache_policy=NO_CACHE, timeout_seconds=60)
def open_scratch(settings: Settings, folder: Path) -> None:
    """The scratch server's folder, reachable by the user it runs as (checked before any download)."""
    check.make_reachable(folder, settings.scratch_root)


def _bin(settings: Settings, manifest: Manifest) -> Path:
    return server_bin(settings, int(manifest.server_version.split(".")[0]))


@task(name="pg-verifybackup", cache_policy=NO_CACHE, timeout_seconds=3600)
def verify_files(settings: Settings, manifest: Manifest, folder: Path) -> None:
    check.verify_files(folder / "data", _bin(settings, manifest))
    get_run_logger().info("pg_verifybackup: every file of %s matches its backup manifest", manifest.id)


@task(name="start-scratch-server", cache_policy=NO_CACHE)
def start_scratch(settings: Settings, manifest: Manifest, folder: Path, port: int) -> None:
    check.start_plain(folder / "data", port, _bin(settings, manifest), settings.dump_timeout_seconds)
    get_run_logger().info("base backup %s started on 127.0.0.1:%d", manifest.id, port)


@task(name="stop-scratch-server", cache_policy=NO_CACHE, timeout_seconds=120)
def stop_scratch(settings: Settings, folder: Path) -> None:
    if (folder / "data" / "postmaster.pid").exists():
        pitr.stop(folder / "data", server_bin(settings))


@task(name="skip-without-pitr", cache_policy=NO_CACHE)
def skipped(settings: Settings, flow: str) -> dict[str, str]:
    """A scheduled physical check where point-in-time recovery is not set up: said in the artifact, not notified."""
    told = Report(
        title=f"{flow} skipped: point-in-time recovery is not set up",
        ok=True,
        summary="SPPG_BACKUP_PITR is off, so the weekly schedule takes and checks no base backup here.",
        next_step="set it up as the README says (point-in-time recovery); `sppg-backup backup base` takes one now",
    )
    tell(settings, flow, told, send=False)
    get_run_logger().info("skipped: SPPG_BACKUP_PITR is off")
    return {"status": "skipped", "reason": "SPPG_BACKUP_PITR is off"}


@task(name="find-newest-recoverable", cache_policy=NO_CACHE, timeout_seconds=300)
def newest_recoverable(settings: Settings) -> tuple[Manifest, datetime]:
    """The newest base backup and the time of the newest WAL in storage (what a disaster now would get back)."""
    found = pitr.window(destinations(settings).storage)
    if not found.bases or found.latest is None:
        raise CheckFailed(
            "find base backup", f"no base backup in {settings.storage_url}: run `sppg-backup backup base`"
        )
    identities_for(settings, found.bases[-1])
    get_run_logger().info("base backup %s; newest WAL %s", found.bases[-1].id, shown_time(found.latest, settings.zone))
    return found.bases[-1], found.latest
