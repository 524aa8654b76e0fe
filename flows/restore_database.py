"""restore-database: the guide's manual database restore, as a flow an on-call engineer runs from the UI."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.db.catalog import Manifest
from sppg_backup.db.recovery import RestorePlan, RestoreRequest
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.ops.containers import Service
from sppg_backup.settings import load_settings
from sppg_backup.tasks.choices import DATABASE, offer_backups
from sppg_backup.tasks.common import run_name, scratch_folder, step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time
from sppg_backup.tasks.restore import (
    download_and_restore,
    plan_restore,
    report_restore,
    start_again,
    start_left_stopped,
    start_services,
    stop_services,
    take_safety_backup,
    target_url,
    verify_restore,
)

DEFAULTS = RestoreRequest()  # a default, not None: the UI's form opens filled in, every field editable
REQUEST = (
    "Pick the backup and the target, tick confirm, and Submit. Tick dry run first to see what would happen. If the "
    "run fails, fix the cause and press Retry: the safety backup and the download are not repeated."
)


@flow(
    name="restore-database",
    description="Stop services, restore a backup, verify it, start services.",
    flow_run_name=run_name,
)
def restore_database(
    request: RestoreRequest = Field(DEFAULTS, description=REQUEST),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    url = target_url(settings, request)
    plan: RestorePlan | None = None
    safety: Manifest | None = None
    services: list[Service] = []
    try:
        # 0. One run at a time on the target database and the backups, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE, database_url=url):
            start_left_stopped(settings)  # what a killed run left stopped comes back first
            clean_leftovers(settings, servers=(url,))
            # 2. List available backups: choose one, and look at the target.
            plan = step(plan_restore, settings, request)
            if request.dry_run:
                return report_restore(settings, request, plan)
            # The download stays in this run's scratch folder after a failure, for the retry; it goes on success.
            with scratch_folder(settings, keep_on_failure=True) as folder:
                if plan.safety_backup:
                    safety = take_safety_backup(settings, url, plan)
                # 1. Stop application services.
                services = stop_services(settings, plan.services) if plan.services else []
                # 3. Restore from backup.
                kept = download_and_restore(settings, url, plan.manifest, keep_old=safety is None, folder=folder)
                # 4. Verify restore.
                verify_restore(settings, url, plan.manifest)
            # 5. Restart application services.
            if services:
                start_services(settings, services)
    except BaseException as error:
        # 5. Restart application services, whatever happened.
        restarted = start_again(settings, services) if services else None
        report_restore(settings, request, plan, safety, error=error, services=restarted)
        if safety:
            offer_backups(settings, DATABASE)
        raise
    result = report_restore(settings, request, plan, safety, kept)
    offer_backups(settings, DATABASE)
    return result
