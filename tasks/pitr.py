"""Tasks of restore-pitr: choose the base backup, unpack it, fetch the WAL, recover, check, report."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db import drill, postgres
from sppg_backup.db.catalog import Manifest
from sppg_backup.display import shown_time
from sppg_backup.errors import CheckFailed, ConfigError
from sppg_backup.ops.report import Report
from sppg_backup.physical import feed, gaps, pitr
from sppg_backup.physical.pitr import PitrRequest
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import destinations
from sppg_backup.tasks.reporting import Entry, tell
from sppg_backup.tasks.verify import identities_for


def target_of(request: PitrRequest) -> Path:
    if not request.target_dir:
        raise ConfigError("no folder for the recovered data: give --target-dir (a new or empty folder)")
    if request.to is None and not request.latest:
        raise ConfigError("give a time to recover to (--to) or --latest")
    return Path(request.target_dir).resolve()


@task(name="choose-base-backup", cache_policy=NO_CACHE, timeout_seconds=300)
def choose_base(
    settings: Settings, request: PitrRequest, port: int, target: Path, ignore: tuple[str, ...] = ()
) -> Manifest:
    """Check the folder and port, then the newest base backup ending before the target; its key opens it."""
    pitr.check_target(target, port, ignore)
    manifest = pitr.choose(destinations(settings).storage, request.to, settings.zone)
    identities_for(settings, manifest)
    get_run_logger().info("base backup %s (ends %s)", manifest.id, shown_time(manifest.finished_at, settings.zone))
    return manifest


@task(name="unpack-base-backup", cache_policy=NO_CACHE)
def unpack_base(settings: Settings, manifest: Manifest, target: Path) -> int:
    """Stream it from storage (sha256 checked), decrypted, decompressed and unpacked, into TARGET/data."""
    data = target / "data"
    if data.exists():  # what an earlier try of this step left: it is ours, the target was checked empty
        shutil.rmtree(data)
    files = pitr.unpack_base(destinations(settings).storage, manifest, identities_for(settings, manifest), data)
    get_run_logger().info("unpacked %d files of %s into %s", files, manifest.id, data)
    return files


@task(name="list-wal", cache_policy=NO_CACHE, timeout_seconds=600)
def list_wal(settings: Settings, manifest: Manifest, target: Path, latest: bool) -> pitr.WalPlan:
    """The WAL after the base backup in storage; its timeline histories into TARGET/wal (the segments follow
    while the server recovers)."""
    storage = destinations(settings).storage
    identities = identities_for(settings, manifest)
    plan = pitr.plan_wal(storage, manifest, identities, target / "data", target / "wal", latest)
    got = f"{plan.segments[0]} .. {plan.segments[-1]}" if plan.segments else "none"
    logger = get_run_logger()
    logger.info("%d WAL segments (%s) and %d timeline histories", len(plan.segments), got, len(plan.histories))
    return plan


def server_bin(settings: Settings, major: int = 0) -> Path:
    """Where pg_ctl of the base backup's major version (or newer) is."""
    return settings.pg_bin_dir or Path(postgres.find_tool("pg_ctl", major)[0]).parent


@task(name="recover", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def recover(
    settings: Settings, request: PitrRequest, manifest: Manifest, target: Path, port: int, plan: pitr.WalPlan
) -> list[str]:
    """PostgreSQL's recovery to the target, then promotion, fed the WAL as it replays; the segments fetched.
    A gap in the WAL the target needs fails before the server starts, a segment damaged in storage or a
    recovery that stopped short fails naming it."""
    assert manifest.physical is not None
    bin_dir = server_bin(settings, int(manifest.server_version.split(".")[0]))
    storage = destinations(settings).storage
    identities = identities_for(settings, manifest)
    data, folder = target / "data", target / "wal"

    def check(stored: set[str]) -> None:
        pitr.check_gaps(storage, manifest, identities, data, folder, request.to, bin_dir, settings.zone, stored)

    check(set(plan.segments))
    pitr.configure(data, folder, request.to, port)
    with feed.Feed(storage, plan.segments, identities, folder, pitr.server_user()) as feeding:
        try:
            pitr.start(data, folder, bin_dir, settings.dump_timeout_seconds, feeding.check)
        except CheckFailed:
            feeding.check()  # the cause, when fetching failed
            check(set(plan.segments))  # names a segment damaged in storage the recovery needed
            raise
    logger = get_run_logger()
    for why in gaps.damaged_wal(folder).values():
        logger.warning("left out, damaged in storage: %s (the recovery did not need it)", why)
    logger.info("recovered and promoted with %d WAL segments, listening on 127.0.0.1:%d", len(feeding.fetched), port)
    return feeding.fetched


@task(name="smoke-checks", cache_policy=NO_CACHE, timeout_seconds=600)
def smoke_checks(settings: Settings, url: str) -> None:
    failed = [r for r in drill.run_smoke_checks(url, settings.drill_checks) if not r.passed]
    if failed:
        raise CheckFailed("verify", "; ".join(f"{r.name}: got {r.got}, expected {r.expect}" for r in failed))


@task(name="stop-recovered-server", cache_policy=NO_CACHE, timeout_seconds=120)
def discard(settings: Settings, target: Path, created: bool) -> None:
    """After a failure: the half-recovered server stopped and, when this run made the folder, removed."""
    if (target / "data" / "postmaster.pid").exists():
        pitr.stop(target / "data", server_bin(settings))
    pitr.remove(target, created)


@task(name="report-pitr", cache_policy=NO_CACHE)
def report_pitr(
    settings: Settings,
    request: PitrRequest,
    result: dict[str, Any] | None,
    error: BaseException | None = None,
) -> None:
    wanted = shown_time(request.to, settings.zone) if request.to else "the newest state in storage"
    if error is None and result is not None:
        told = Report(
            title=f"Point-in-time restore OK: {wanted}",
            ok=True,
            summary=f"The database as it was at {wanted} runs on 127.0.0.1:{result['port']} from "
            f"{result['data_dir']} (base backup {result['base_backup_id']}, {result['wal_files']} WAL files, "
            f"{result['seconds']:.1f} s). The running database was not touched.",
            next_step="check the data there; copy what is needed back, or replace the server with it",
        )
        entry = Entry("restore.pitr", result["base_backup_id"], "ok", {"to": result["recovered_to"]})
    else:
        told = Report(
            title="Point-in-time restore FAILED",
            ok=False,
            summary=f"Bringing the database back to {wanted} failed: {error}\nThe running database was not touched.",
            next_step="fix the cause above and run `sppg-backup restore pitr` again",
        )
        entry = Entry("restore.pitr", "-", "failed", {"error": str(error)}, to_storage=False)
    tell(settings, "restore-pitr", told, entry)


def summary(
    settings: Settings, request: PitrRequest, manifest: Manifest, target: Path, port: int, wal: list[str], began: float
) -> dict[str, Any]:
    """The flow's result: where the recovered database runs (its URL without the password) and from what."""
    login, _ = postgres.parse(settings.database_url)
    return {
        "url": f"postgresql://{login.user}@127.0.0.1:{port}/{login.database}",
        "port": port,
        "data_dir": str(target / "data"),
        "recovered_to": request.to.astimezone(UTC).isoformat() if request.to else "latest",
        "base_backup_id": manifest.id,
        "wal_files": len(wal),
        "seconds": round(time.monotonic() - began, 1),
        "finished_at": datetime.now(UTC).isoformat(),
    }
