"""restore-full-system: the guide's complete system restore, steps 1 to 7."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.db.recovery import RestoreRequest
from sppg_backup.flows.restore_database import restore_database
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.full.system import FullRestoreRequest
from sppg_backup.ops.containers import Service
from sppg_backup.settings import load_settings
from sppg_backup.tasks.common import run_name, scratch_folder, step
from sppg_backup.tasks.full import (
    check_health,
    choose_set,
    download_parts,
    find_services,
    report_full,
    restore_application,
    restore_image,
    restored_summary,
    target_folder,
)
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, ON_FILES, one_at_a_time
from sppg_backup.tasks.restore import start_again, start_left_stopped, start_services, stop_services

DEFAULTS = FullRestoreRequest()  # a default, not None: the UI's form opens filled in
REQUEST = (
    "Pick the full-system backup, tick confirm, and Submit. If the run fails, fix the cause and press Retry: the "
    "downloads and the safety backup are not repeated."
)


@flow(
    name="restore-full-system",
    description="Download a full set, stop services, restore everything, verify.",
    flow_run_name=run_name,
)
def restore_full_system(
    request: FullRestoreRequest = Field(DEFAULTS, description=REQUEST),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    services: list[Service] = []
    set_id = request.set_id or "the newest full-system backup"
    try:
        # 0. One run at a time on this database, its backups and the file snapshots, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE, ON_FILES):
            clean_leftovers(settings)
            start_left_stopped(settings)  # what a killed run left stopped comes back first
            full = step(choose_set, settings, request)
            set_id = full.id
            app_dir = target_folder(settings, request, full)
            # The downloaded parts stay in this run's scratch folder after a failure, for the retry.
            with scratch_folder(settings, keep_on_failure=True) as folder:
                # 1. Download full backup (every part's sha256 is checked before anything changes).
                stored = download_parts(settings, full, folder)
                # 2. Stop all services.
                names = find_services(settings)
                services = stop_services(settings, names) if names else []
                # 3. Restore application files.
                restore_application(settings, stored["application"], app_dir)
                # 4. Restore Docker images.
                images = {p.name: restore_image(settings, stored[p.name], p.name) for p in full.part("image")}
                # 5. Restore database (the restore-database flow, with its safety backup and checks).
                restore_database(
                    RestoreRequest(
                        backup_id=full.part("database")[0].ref,
                        target_url=request.target_url,
                        keep_services_running=True,
                        confirm=True,
                        safety_backup=request.safety_backup,
                    ),
                    config_file,
                )
    except BaseException as error:
        restarted = "Nothing was stopped."
        if services:
            restarted = start_again(settings, services)
        report_full(settings, "restore.full", set_id, error, restarted)
        raise
    # 6. Start services.
    if services:
        start_services(settings, services)
    try:
        # 7. Verify system.
        health = check_health(settings)
    except BaseException as error:
        report_full(settings, "restore.full", full.id, error, "Everything was restored, but the system is not healthy.")
        raise
    detail = restored_summary(full, app_dir, images, health)
    report_full(settings, "restore.full", full.id, None, detail)
    return {"set_id": full.id, "app_dir": app_dir, "images": images, "health": health, "status": "restored"}
