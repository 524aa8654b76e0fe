"""recover-server: the guide's scenario 2 (complete server failure) and 3 (the region is gone, from the DR
replica): a new host with Docker, the storage URL and the key comes back whole."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.db.recovery import RestoreRequest
from sppg_backup.flows.restore_database import restore_database
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.full.recover import Plan, RecoverRequest
from sppg_backup.full.system import FullSet
from sppg_backup.settings import Settings, load_settings
from sppg_backup.tasks.common import run_name, scratch_folder, step
from sppg_backup.tasks.full import check_health, download_parts, restore_application, restore_image
from sppg_backup.tasks.limits import ON_DATABASE, ON_FILES, one_at_a_time
from sppg_backup.tasks.pitr import smoke_checks
from sppg_backup.tasks.pitr_replace import wait_for_database
from sppg_backup.tasks.recover import (
    begin,
    database_service,
    make_plan,
    recover_in_container,
    report_recovery,
    restore_config,
    rpo_seconds,
    start_stack,
    write_settings,
)

DEFAULTS = RecoverRequest()
REQUEST = "The storage (or the DR replica), the key file, and optionally the set and the time; tick confirm."


@flow(
    name="recover-server",
    description="A new server from the storage and the key: files, images, database, stack.",
    flow_run_name=run_name,
)
def recover_server(
    request: RecoverRequest = Field(DEFAULTS, description=REQUEST),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    began, clock = datetime.now(UTC), time.monotonic()
    settings = load_settings(config_file)  # this host's own settings (often none)
    plan: Plan | None = None
    try:
        # 0. Read the catalog from storage: the newest complete full-system backup and its settings.
        full, settings, plan, database = step(make_plan, settings, request)
        if request.dry_run:
            return {"status": "planned", "plan": plan.lines(), "set_id": plan.set_id, "pitr": plan.pitr}
        images: dict[str, str] = {}
        # One run at a time on the set's database, its backups and file snapshots.
        with one_at_a_time(settings, ON_DATABASE, ON_FILES):
            if plan.earlier == "database":  # an earlier try brought back all of it: only the stack is left
                settings = load_settings(plan.settings_file)
            else:
                settings, images, database = bring_back(settings, plan, full, request)
            # 6. Start the rest of the stack.
            started = start_stack(settings, plan) if plan.compose_file else []
            # 7. Verify system.
            health = check_health(settings)
            settings = write_settings(settings, plan, "done", database)
    except BaseException as error:
        report_recovery(settings, plan, None, error)
        raise
    result = {
        "status": "recovered",
        "set_id": plan.set_id,
        "app_dir": plan.app_dir,
        "images": images,
        "database": database,
        "containers": started,
        "health": health,
        "settings_file": plan.settings_file,
        "rto_seconds": round(time.monotonic() - clock, 1),
        "rpo_seconds": rpo_seconds(began, database.get("recovered_to")),
        "began_at": began.isoformat(),
    }
    report_recovery(settings, plan, result)
    return result


def bring_back(
    settings: Settings, plan: Plan, full: FullSet, request: RecoverRequest
) -> tuple[Settings, dict[str, str], dict[str, Any]]:
    """Steps 1 to 5: what a rerun after a kill or a failure redoes from the start (an earlier try's stack and
    files removed first)."""
    begin(settings, plan)
    with scratch_folder(settings) as folder:
        # 1. Download the full backup (every part's sha256 checked before anything is written).
        stored = download_parts(settings, full, folder)
        # 2. Application files, 3. the configuration (its .env), and this host's settings.
        restore_application(settings, stored["application"], plan.app_dir)
        restore_config(settings, full, plan)
        settings = write_settings(settings, plan, "started")
        # 4. Docker images.
        images = {p.name: restore_image(settings, stored[p.name], p.name) for p in full.part("image")}
    # 5. The database: its service first, then its data (to the point in time, or the set's dump).
    service = database_service(settings, plan, start=not plan.pitr)
    if plan.pitr and service:
        database = {"plan": plan.database} | recover_in_container(settings, plan, service, request.to)
        wait_for_database(settings)
        smoke_checks(settings, settings.database_url)
    else:
        if service:
            wait_for_database(settings, maintenance=True)
        dump = full.part("database")[0].ref
        restore_database(
            RestoreRequest(backup_id=dump, keep_services_running=True, confirm=True, safety_backup=False),
            plan.settings_file,
        )
        database = {"plan": plan.database, "dump": dump, "recovered_to": full.created_at.isoformat()}
    return write_settings(settings, plan, "database", database), images, database
