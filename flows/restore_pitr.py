"""restore-pitr: the guide's `gcloud sql instances clone ... --point-in-time` for our own servers: a new data
directory brought back to any second the base backups and the WAL archive cover. The running database stays,
unless `replace` then puts the recovered data in place of the database container's."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.db import postgres
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.ops import scratch
from sppg_backup.physical import pitr
from sppg_backup.physical.pitr import PitrRequest
from sppg_backup.physical.replace import Place
from sppg_backup.settings import Settings, load_settings
from sppg_backup.tasks import pitr_replace as swapping
from sppg_backup.tasks.base_checks import open_scratch
from sppg_backup.tasks.common import run_name, scratch_folder, step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time
from sppg_backup.tasks.pitr import (
    choose_base,
    discard,
    list_wal,
    recover,
    report_pitr,
    smoke_checks,
    summary,
    target_of,
    unpack_base,
)
from sppg_backup.tasks.restore import start_left_stopped, start_services, stop_services

DEFAULT = PitrRequest()
REQUEST = (
    "Where to bring the database back and to when: a new data directory beside the running server (which is not "
    "touched), a port, and a time in WIB or 'latest'. Or tick replace (and confirm) to put it in place of the "
    "database container's data."
)


@flow(
    name="restore-pitr",
    description="Base backup, WAL, recovery to a point in time, into a new data directory.",
    flow_run_name=run_name,
)
def restore_pitr(
    request: PitrRequest = Field(DEFAULT, description=REQUEST),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    try:
        with one_at_a_time(settings, ON_DATABASE):  # 0. One run at a time on this database and its backups.
            clean_leftovers(settings)
            start_left_stopped(settings)  # what a killed run left stopped (or half-swapped) comes back first
            began = time.monotonic()
            result = replace_database(settings, request, began) if request.replace else beside(settings, request, began)
    except BaseException as error:
        report_pitr(settings, request, None, error)
        raise
    report_pitr(settings, request, result)
    return result


def beside(settings: Settings, request: PitrRequest, began: float) -> dict[str, Any]:
    """Into the new folder the request names; what a failure put there goes."""
    target = target_of(request)
    created, chosen = not target.exists(), False
    try:
        port = request.port or pitr.free_port()
        # 1. Choose the newest base backup that ends before the target (refused: a time out of range).
        manifest = step(choose_base, settings, request, port, target)
        chosen = True
        wal = recover_into(settings, request, manifest, target, port)
    except BaseException:
        if chosen:
            discard(settings, target, created)
        raise
    return summary(settings, request, manifest, target, port, wal, began)


def recover_into(settings: Settings, request: PitrRequest, manifest: Any, target: Path, port: int) -> list[str]:
    # 2. Restore it into the new data directory.
    unpack_base(settings, manifest, target)
    # 3. The WAL after it in storage (fetched while the server replays it).
    plan = step(list_wal, settings, manifest, target, request.to is None)
    # 4. Recover to the point in time, then promote.
    wal = recover(settings, request, manifest, target, port, plan)
    # 5. Check the recovered database.
    smoke_checks(settings, pitr.recovered_url(settings.database_url, port))
    return wal


def replace_database(settings: Settings, request: PitrRequest, began: float) -> dict[str, Any]:
    """Recovered in a scratch folder and checked there, copied beside the container's data, swapped in."""
    # 0. The database container and where its data is; refused without confirmation.
    place = swapping.find_place(settings, request)
    stamp = swapping.stamp_now()
    with scratch_folder(settings) as folder:
        open_scratch(settings, folder)
        port = request.port or pitr.free_port()
        try:
            manifest = step(choose_base, settings, request, port, folder, (scratch.LOCK,))
            wal = recover_into(settings, request, manifest, folder, port)
        finally:
            swapping.stop_recovered(settings, folder / "data", check=False)
        swapping.stop_recovered(settings, folder / "data")
        result = summary(settings, request, manifest, folder, port, wal, began)
        # 6. Copy it onto the disk of the container's data while the database still runs.
        incoming = swapping.copy_in(place, folder / "data", stamp)
    try:
        # 7. Put it in place of the container's data and check it there.
        return result | swap_in(settings, place, incoming, stamp)
    finally:
        swapping.remove_incoming(settings, place, incoming, stamp)


def swap_in(settings: Settings, place: Place, incoming: Path, stamp: str) -> dict[str, Any]:
    """Stop the services and the database, swap the data, start the database, check it, start the services;
    when anything fails after the database stopped, its old data goes back and it starts on it."""
    services = stop_services(settings, [name for name in settings.services if name != settings.db_container])
    try:
        # the database runs afterwards even if it was stopped before: the check needs it
        database = [dataclasses.replace(s, was_running=True) for s in stop_services(settings, [place.container.name])]
        try:
            kept, done = swapping.swap(settings, place, incoming, stamp)
            start_services(settings, database)
            swapping.wait_for_database(settings)
            smoke_checks(settings, settings.database_url)
        except BaseException:
            swapping.roll_back(settings, place, stamp)
            raise
        swapping.finish(settings, place, done, kept)
    finally:
        start_services(settings, services)
    url = postgres.split_password(settings.database_url)[0]
    return {
        "url": url,
        "port": postgres.parse(url)[0].port,
        "data_dir": place.data,
        "replaced": place.container.container_name,
        "kept": kept,
    }
