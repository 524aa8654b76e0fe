"""backup-config: a snapshot of the configuration files when, and only when, they changed."""

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


@flow(name="backup-config", description="Snapshot CONFIG_PATHS (compose file, .env, nginx/) when they changed.")
def backup_config(config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    clean_leftovers(settings)
    try:
        snap = step(take_snapshot, settings, "config", only_if_changed=True)
    except BaseException as error:
        report_snapshot(settings, "config", None, error)
        raise
    report_snapshot(settings, "config", snap)
    if snap:
        replicate_new(settings, ("config/",))  # to the replicas in the other region
        offer_backups(settings, ("restore-config",))
    return snap.model_dump(mode="json") if snap else {"status": "unchanged"}
