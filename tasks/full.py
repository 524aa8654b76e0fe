"""Tasks of the full-system backup and recovery flows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db.catalog import Manifest
from sppg_backup.display import human_size
from sppg_backup.errors import CheckFailed, ConfigError
from sppg_backup.files.snapshots import Snapshot
from sppg_backup.full import system
from sppg_backup.full.system import FullRestoreRequest
from sppg_backup.ops import containers, report_files, scratch
from sppg_backup.settings import Settings, recorded
from sppg_backup.tasks.common import destinations, keyed_on, retrying, who
from sppg_backup.tasks.files import identities
from sppg_backup.tasks.reporting import Entry, tell


@task(name="check-sources", cache_policy=NO_CACHE, timeout_seconds=300)
def check_sources(settings: Settings) -> None:
    """Before the database is dumped: the application folder, the Docker engine and every image are there."""
    if settings.app_dir is None or not settings.app_dir.is_dir():
        raise ConfigError(f"bad setting SPPG_BACKUP_APP_DIR: {settings.app_dir or '(empty)'} is not a folder")
    if settings.docker_images:
        client = containers.connect()
        for ref in settings.docker_images:
            system.find_image(client, ref)
    get_run_logger().info("APP_DIR, the Docker engine and %d images are there", len(settings.docker_images))


@task(name="reserve-set-id", cache_policy=NO_CACHE, timeout_seconds=120)
def reserve_set(settings: Settings) -> str:
    return system.reserve_id(destinations(settings).storage, datetime.now(UTC))


@task(name="tar-application", cache_policy=NO_CACHE)
def backup_application(settings: Settings, set_id: str) -> system.Part:
    """2. Application files: a tar of APP_DIR, streamed."""
    if settings.app_dir is None:
        raise CheckFailed("application", "SPPG_BACKUP_APP_DIR is empty: nothing to back up as application files")
    part = system.backup_application(
        destinations(settings).storage, set_id, settings.app_dir, settings.require_recipients()
    )
    log = get_run_logger()
    log.info("application files of %s: %s stored", settings.app_dir, human_size(part.size))
    for line in part.skipped:
        log.warning("application: skipped %s", line)
    return part


@task(name="docker-save", cache_policy=NO_CACHE)
def backup_image(settings: Settings, set_id: str, ref: str) -> system.Part:
    """3. Docker images: `docker save`, streamed."""
    part = system.backup_image(
        destinations(settings).storage, set_id, containers.connect(), ref, settings.require_recipients()
    )
    get_run_logger().info("image %s: %s stored", ref, human_size(part.size))
    return part


@task(name="publish-set", cache_policy=NO_CACHE, timeout_seconds=300)
def publish_set(
    settings: Settings,
    set_id: str,
    started: datetime,
    database: Manifest,
    parts: list[system.Part],
    config: Snapshot | None,
    base: Manifest | None = None,
) -> system.FullSet:
    """4. One manifest for the whole set, written last."""
    taken = system.Taken(
        set_id, started, database, parts, config, settings.app_dir, settings.docker_images, base, recorded(settings)
    )
    full = system.assemble(taken, datetime.now(UTC), settings.encryption, who())
    system.publish(destinations(settings).storage, full)
    get_run_logger().info("full-system backup %s listed: %d parts", set_id, len(full.parts))
    return full


@task(name="discard-set", cache_policy=NO_CACHE)
def discard_set(settings: Settings, set_id: str) -> str:
    """Remove the parts a failed run stored; a failure here is reported, not raised over the first one."""
    try:
        system.discard(destinations(settings).storage, set_id)
    except Exception as exc:
        get_run_logger().warning("could not remove the parts of %s: %s", set_id, exc)
        return f"Its stored parts under full/{set_id}/ could not be removed ({exc}); prune or delete them."
    return ""


@task(name="report-full", cache_policy=NO_CACHE)
def report_full(settings: Settings, action: str, set_id: str, error: BaseException | None, detail: str = "") -> None:
    entry = Entry(action, set_id, "failed" if error else "ok", {"error": str(error) if error else None})
    key = "backup-full-system" if action == "backup.full" else "restore-full-system"
    tell(settings, key, report_files.full_system(action, set_id, error, detail), entry)


@task(name="choose-set", cache_policy=NO_CACHE, timeout_seconds=300)
def choose_set(settings: Settings, request: FullRestoreRequest) -> system.FullSet:
    storage = destinations(settings).storage
    full = system.choose(storage, request.set_id)
    system.check_parts(storage, full)  # before anything changes: every part is still there
    if not request.confirm:
        raise CheckFailed(
            "confirmation",
            f"restoring {full.id} replaces the application files, the images and the database; "
            "it needs --yes (confirm=true)",
        )
    get_run_logger().info("full-system backup %s (%s): %d parts", full.id, full.created_at, len(full.parts))
    return full


@task(
    name="download-part",
    cache_key_fn=keyed_on(lambda p: p["set_id"], lambda p: p["part"].key, lambda p: p["part"].sha256),
    persist_result=True,
)
def download_part(settings: Settings, set_id: str, part: system.Part, folder: str) -> str:
    """1. Download the part and check its sha256; a retried run reuses the file while it is still whole."""
    assert part.key is not None
    dest = Path(folder) / part.key.rsplit("/", 1)[-1]
    system.fetch(destinations(settings).storage, part, dest)
    scratch.seal(dest)
    get_run_logger().info("%s: %s downloaded, sha256 matches", part.name, human_size(part.size))
    return str(dest)


def download_parts(settings: Settings, full: system.FullSet, folder: Path) -> dict[str, str]:
    """Every part of the set into the run's folder; a cached download whose file is gone or changed is redone."""
    stored = {}
    for part in full.parts:
        if part.key is None:
            continue
        download = retrying(download_part, settings)
        if not scratch.is_sealed(folder / part.key.rsplit("/", 1)[-1]):
            download = download.with_options(refresh_cache=True)
        stored[part.name] = download(settings, full.id, part, str(folder))
    return stored


@task(name="find-services", cache_policy=NO_CACHE, timeout_seconds=300)
def find_services(settings: Settings) -> list[str]:
    """The configured services that exist on this engine (a fresh engine has none yet)."""
    if not settings.services:
        return []
    found, missing = containers.resolve_existing(containers.connect(), list(settings.services))
    if missing:
        get_run_logger().warning(
            "no container for %s on this engine: create them afterwards (docker compose up -d)", ", ".join(missing)
        )
    return sorted({s.name for s in found})


@task(name="restore-application", cache_policy=NO_CACHE)
def restore_application(settings: Settings, stored: str, app_dir: str) -> int:
    """3. Restore application files."""
    done = system.extract_application(Path(stored), identities(settings), Path(app_dir), settings.restore_setid_bits)
    log = get_run_logger()
    log.info("application files: %d entries restored into %s", done.entries, app_dir)
    if done.setid_dropped:
        log.warning("setuid/setgid bits dropped (RESTORE_SETID_BITS keeps them): %s", ", ".join(done.setid_dropped))
    if done.links_outside:
        log.warning("symlinks that lead outside %s, restored as links: %s", app_dir, ", ".join(done.links_outside))
    return done.entries


@task(name="docker-load", cache_policy=NO_CACHE)
def restore_image(settings: Settings, stored: str, ref: str) -> str:
    """4. Restore Docker images."""
    image_id = system.load_image(Path(stored), identities(settings), containers.connect(), ref)
    get_run_logger().info("image %s loaded (%s)", ref, image_id[:19])
    return image_id


@task(name="check-health", cache_policy=NO_CACHE)
def check_health(settings: Settings) -> int | None:
    """7. Verify the system: the health URL must answer."""
    if not settings.health_url:
        get_run_logger().warning("SPPG_BACKUP_HEALTH_URL is not set: the system's health was not checked")
        return None
    status = system.wait_healthy(settings.health_url, settings.health_timeout_seconds)
    get_run_logger().info("%s answered %d", settings.health_url, status)
    return status


def restored_summary(full: system.FullSet, app_dir: str, images: dict[str, str], health: Any) -> str:
    return (
        f"Application files restored into {app_dir}; images loaded: {', '.join(images) or 'none'}; "
        f"database restored from {full.part('database')[0].ref}; health check: {health or 'not configured'}."
    )


def target_folder(settings: Settings, request: FullRestoreRequest, full: system.FullSet) -> str:
    # The engineer's argument or setting, never the manifest's: storage is not trusted to say where files go.
    folder = request.app_dir or (str(settings.app_dir) if settings.app_dir else None)
    if not folder:
        raise CheckFailed(
            "application",
            f"no folder for the application files (it was {full.app_dir} when backed up): give --app-dir or set "
            "APP_DIR",
        )
    return folder
