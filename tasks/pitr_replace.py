"""Tasks of `restore pitr --replace`: find the database container's data, copy the recovered data onto its disk,
swap it in, check it in the container, put the old data back when the check fails."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.errors import CheckFailed, ConfigError, TransientError
from sppg_backup.ops import containers
from sppg_backup.physical import pitr, replace
from sppg_backup.physical.pitr import PitrRequest
from sppg_backup.physical.replace import Place, Swap
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import audit_trail
from sppg_backup.tasks.pitr import server_bin


@task(name="find-database-data", cache_policy=NO_CACHE, timeout_seconds=120)
def find_place(settings: Settings, request: PitrRequest) -> Place:
    """Refused without confirmation; the database's container and where its data is on this host."""
    if not settings.db_container:
        raise ConfigError("--replace needs SPPG_BACKUP_DB_CONTAINER: the database's container or Compose service")
    if request.target_dir:
        raise ConfigError(
            "--replace recovers in a scratch folder, then in the database's place: leave out --target-dir"
        )
    client = containers.connect()
    place = replace.find(client, settings.db_container)
    for gone in replace.abandoned_incoming(client, place, settings.state_dir):
        get_run_logger().warning("removed %s: a copy of recovered data a killed run left", gone)
    if not request.confirm:
        raise CheckFailed(
            "confirmation",
            f"--replace stops {place.container.container_name} and puts the recovered data in place of its data "
            f"({place.data}); add --yes (confirm=true) to do it",
        )
    get_run_logger().info("database %s, data %s", place.container.container_name, place.data)
    return place


@task(name="stop-recovered-server", cache_policy=NO_CACHE, timeout_seconds=300)
def stop_recovered(settings: Settings, data: Path, check: bool = True) -> None:
    if (data / "postmaster.pid").exists():
        pitr.stop(data, server_bin(settings))
    if check and (data / "postmaster.pid").exists():
        raise CheckFailed("pitr", f"the recovered server in {data} did not stop")


@task(name="copy-onto-the-databases-disk", cache_policy=NO_CACHE)
def copy_in(place: Place, recovered: Path, stamp: str) -> Path:
    """The recovered data copied beside the database's data (the database still runs); the copy's data folder."""
    folder = replace.incoming(containers.connect(), place, stamp)
    try:
        data = replace.copy_in(recovered, folder, place.uid, place.gid)
    except BaseException:
        replace.remove_incoming(containers.connect(), place, folder, stamp)
        raise
    get_run_logger().info("recovered data copied to %s", folder)
    return data


@task(name="swap-in-recovered-data", cache_policy=NO_CACHE, timeout_seconds=300)
def swap(settings: Settings, place: Place, incoming: Path, stamp: str) -> tuple[str, Swap]:
    """The old data moved aside (kept), the recovered data moved in; audited before the first move."""
    kept_name, kept = replace.aside(containers.connect(), place, stamp)
    audit_trail(settings).record(
        "pitr.replace", place.container.container_name, "started", data=place.data, kept=kept_name
    )
    done = replace.swap_in(settings.state_dir, place.data_path, incoming, kept)
    get_run_logger().info("the old data of %s is kept in %s", place.container.container_name, kept_name)
    return kept_name, done


@task(name="wait-for-database", cache_policy=NO_CACHE, timeout_seconds=900)
def wait_for_database(settings: Settings, maintenance: bool = False) -> None:
    """The container's server accepts connections (on its `postgres` database with `maintenance`: a new server
    has no ERP database yet) and is out of recovery."""
    deadline = time.monotonic() + settings.service_start_timeout_seconds
    url = settings.database_url
    while True:
        try:
            with psycopg.connect(url, connect_timeout=5, dbname="postgres" if maintenance else None) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return
        except psycopg.Error as exc:
            if time.monotonic() > deadline:
                raise TransientError(f"the database does not accept connections: {exc}") from None
        if time.monotonic() > deadline:
            raise TransientError("the database is still in recovery")
        time.sleep(0.5)


@task(name="put-old-data-back", cache_policy=NO_CACHE, timeout_seconds=900)
def roll_back(settings: Settings, place: Place, stamp: str) -> None:
    """The swap failed or the replaced database failed its check: stopped, its old data back (whatever of the
    swap was done), started again."""
    client = containers.connect()
    containers.stop(client, [place.container], settings.service_stop_timeout_seconds)
    left = replace.written_down(settings.state_dir, place.data_path)
    if left is not None:
        replace.undo(settings.state_dir, left)
        audit_trail(settings).record("pitr.replace", place.container.container_name, "rolled back", data=place.data)
    replace.drop_empty_aside(client, place, stamp)
    running = dataclasses.replace(place.container, was_running=True)
    containers.start(client, [running], settings.service_start_timeout_seconds)


@task(name="remove-incoming-copy", cache_policy=NO_CACHE, timeout_seconds=300)
def remove_incoming(settings: Settings, place: Place, incoming: Path, stamp: str) -> None:
    """The incoming copy removed, unless a swap with it is still written down (then its half is in use)."""
    if replace.written_down(settings.state_dir, place.data_path) is not None:
        get_run_logger().error("the swap into %s is not undone: %s stays as it is", place.data, incoming.parent)
        return
    replace.remove_incoming(containers.connect(), place, incoming.parent, stamp)


@task(name="finish-replace", cache_policy=NO_CACHE, timeout_seconds=300)
def finish(settings: Settings, place: Place, done: Swap, kept: str) -> None:
    replace.finish(settings.state_dir, done)
    audit_trail(settings).record("pitr.replace", place.container.container_name, "ok", data=place.data, kept=kept)


def undo_abandoned(settings: Settings) -> list[str]:
    """Swaps a killed run left half-done are undone (the old data back); one it finished stays. What was done."""
    said = []
    for left in replace.abandoned(settings.state_dir):
        if left.phase == "done":
            replace.finish(settings.state_dir, left)
            said.append(f"the recovered data in {left.data} stays (a killed run had swapped it in)")
        else:
            replace.undo(settings.state_dir, left)
            said.append(f"the old data is back in {left.data} (a killed run had swapped it half-way)")
        audit_trail(settings).record("pitr.replace", left.data, "finished by a later run", phase=left.phase)
    if settings.db_container:
        client = containers.connect()
        place = replace.find(client, settings.db_container)
        said += [
            f"removed {gone}, left by a killed run"
            for gone in replace.abandoned_incoming(client, place, settings.state_dir)
        ]
    return said


def stamp_now() -> str:
    return f"{datetime.now(UTC):%Y%m%d_%H%M%S}"
