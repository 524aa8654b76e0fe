"""prune-file-snapshots: the guide's lifecycle policy for uploads (90 days, 5 versions of each file)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from sppg_backup.forms import CONFIG_PARAM, DRY_RUN_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.choices import offer_backups
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.files import prune_snapshots, report_prune, report_snapshot
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_FILES, one_at_a_time


@flow(
    name="prune-file-snapshots",
    description="Delete file snapshots past retention and blobs nothing refers to.",
    flow_run_name=run_name,
)
def prune_file_snapshots(dry_run: bool = DRY_RUN_PARAM, config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    try:
        # 0. One run at a time on the file snapshots, whichever worker runs it.
        with one_at_a_time(settings, ON_FILES):
            clean_leftovers(settings)
            result = step(prune_snapshots, settings, dry_run)
    except BaseException as error:
        report_snapshot(settings, "files", None, error, action="prune")
        raise
    report_prune(settings, result, dry_run)
    if not dry_run:
        offer_backups(settings, ("restore-files",))
    return {
        "deleted_snapshots": result.deleted_snapshots,
        "deleted_objects": result.deleted_objects,
        "kept_snapshots": result.kept_snapshots,
        "reasons": result.reasons,
    }
