"""backup-files: the guide's near real-time sync of uploaded files, as incremental snapshots."""

from __future__ import annotations

from typing import Any

from prefect import flow

from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.choices import offer_backups
from sppg_backup.tasks.common import step
from sppg_backup.tasks.files import report_snapshot, take_snapshot
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.replicate import replicate_new


@flow(name="backup-files", description="Snapshot UPLOADS_DIR: upload only new or changed content.")
def backup_files(config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    clean_leftovers(settings)
    try:
        snap = step(take_snapshot, settings, "files")
    except BaseException as error:
        report_snapshot(settings, "files", None, error)
        raise
    report_snapshot(settings, "files", snap)
    if snap:
        replicate_new(settings, ("files/",))  # to the replicas in the other region
        offer_backups(settings, ("restore-files",))
    return snap.model_dump(mode="json") if snap else {"status": "unchanged"}
