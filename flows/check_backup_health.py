"""check-backup-health: the guide's alert conditions, every 15 minutes."""

from __future__ import annotations

from typing import Any

from prefect import flow

from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.choices import offer_backups
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.health import announce_changes, evaluate_health, report_health_failure


@flow(
    name="check-backup-health",
    description="No backup in 25 h, size drop, failed verification, storage full.",
    flow_run_name=run_name,
)
def check_backup_health(config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    try:
        alerts = step(evaluate_health, settings)
        step(announce_changes, settings, alerts)
        offer_backups(settings)
    except BaseException as error:
        report_health_failure(settings, error)
        raise
    return {"healthy": not alerts, "alerts": [{"name": a.name, "summary": a.summary} for a in alerts]}
