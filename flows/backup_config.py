"""backup-config: a snapshot of the configuration files when, and only when, they changed."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from sppg_backup.errors import Skipped
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.choices import offer_backups
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.files import report_snapshot, take_snapshot
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_FILES, one_at_a_time, scheduled, skipped
from sppg_backup.tasks.replicate import replicate_new


@flow(
    name="backup-config",
    description="Snapshot CONFIG_PATHS (compose file, .env, nginx/) when they changed.",
    flow_run_name=run_name,
)
def backup_config(config_file: Text = CONFIG_PARAM) -> dict[str, Any] | State[Any]:
    settings = load_settings(config_file)
    try:
        # 0. One run at a time on these snapshots; a scheduled one that finds another at work is skipped.
        with one_at_a_time(settings, ON_FILES, wait=not scheduled()):
            clean_leftovers(settings)
            snap = step(take_snapshot, settings, "config", only_if_changed=True)
    except Skipped as busy:
        return skipped(busy)
    except BaseException as error:
        report_snapshot(settings, "config", None, error)
        raise
    report_snapshot(settings, "config", snap)
    if snap:
        replicate_new(settings, ("config/",))  # to the replicas in the other region
        offer_backups(settings, ("restore-config",))
    return snap.model_dump(mode="json") if snap else {"status": "unchanged"}
