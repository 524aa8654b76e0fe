"""restore-database: the guide's manual database restore, as a flow an on-call engineer runs from the UI."""

from __future__ import annotations

from typing import Any

from prefect import flow

from sppg_backup.catalog import Manifest
from sppg_backup.docker_services import Service
from sppg_backup.settings import load_settings
from tasks.common import retrying
from tasks.restore import (
    RestoreRequest,
    download_and_restore,
    plan_restore,
    remove_archive,
    report_restore,
    start_again,
    start_services,
    stop_services,
    summary,
    take_safety_backup,
    target_url,
    verify_restore,
)


@flow(name="restore-database", description="Stop services, restore a backup, verify it, start services.")
def restore_database(request: RestoreRequest | None = None, config_file: str | None = None) -> dict[str, Any]:
    request = request or RestoreRequest()
    settings = load_settings(config_file)
    url = target_url(settings, request)
    # 2. List available backups: choose one, and look at the target.
    plan = retrying(plan_restore, settings)(settings, request)
    if request.dry_run:
        return {
            **plan.model_dump(mode="json", exclude={"manifest"}),
            "status": "dry run",
            "steps": plan.describe(settings.zone),
        }
    safety: Manifest | None = None
    services: list[Service] = []
    kept = None
    try:
        if plan.safety_backup:
            safety = take_safety_backup(settings, url, plan)
        # 1. Stop application services.
        services = stop_services(settings, plan.services) if plan.services else []
        # 3. Restore from backup.
        archive, kept = download_and_restore(settings, url, plan.manifest, keep_old=safety is None)
        # 4. Verify restore.
        verify_restore(settings, url, plan.manifest)
    except BaseException as error:
        # 5. Restart application services, whatever happened.
        if services:
            start_again(settings, services)
        report_restore(settings, plan, safety, error)
        raise
    # 5. Restart application services.
    if services:
        start_services(settings, services)
    remove_archive(archive)
    report_restore(settings, plan, safety, None, kept)
    return summary(plan, safety, kept)
