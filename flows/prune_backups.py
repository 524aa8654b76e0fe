"""prune-backups: apply retention on its own (the backup flow also prunes after each backup)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow

from sppg_backup.forms import CONFIG_PARAM, DRY_RUN_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.backup import prune_backups as prune_task
from sppg_backup.tasks.backup import report_prune
from sppg_backup.tasks.choices import FULL, offer_backups
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time


@flow(
    name="prune-backups",
    description="Delete backups past retention; never the newest good one.",
    flow_run_name=run_name,
)
def prune_backups(dry_run: bool = DRY_RUN_PARAM, config_file: Text = CONFIG_PARAM) -> list[dict[str, Any]]:
    settings = load_settings(config_file)
    try:
        # 0. One run at a time on this database and its backups, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE):
            clean_leftovers(settings)
            results = step(prune_task, settings, dry_run)
    except BaseException as error:
        report_prune(settings, [], dry_run, error)
        raise
    report_prune(settings, results, dry_run)
    offer_backups(settings, FULL)
    return [asdict(result) for result in results]
