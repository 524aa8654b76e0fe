"""Cloud SQL, for a production database there (the guide's PITR section): its automatic backups listed, one
restored onto the instance, or the instance cloned to a point in time (`gcloud sql instances clone ...
--point-in-time`), through the Cloud SQL Admin API; each waited on and reported like every other restore."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.db.cloudsql import refuse_unconfirmed
from sppg_backup.forms import CONFIG_PARAM, Text, WibTime
from sppg_backup.settings import load_settings
from sppg_backup.tasks.cloudsql import clone_instance, list_backups, report_cloudsql, restore_backup
from sppg_backup.tasks.common import run_name

BACKUP = Field(
    None, description="The backup run id (see the cloudsql-backups flow, or `sppg-backup cloudsql backups`)."
)
CONFIRM = Field(False, description="Tick to confirm: the instance's data is replaced by the backup's.")
NAME = Field(None, description="The new instance's name, e.g. erp-sppg-db-restored (lowercase, digits, hyphens).")
WHEN = Field(None, description="The moment to clone, in WIB, e.g. 2026-12-01 10:30:59 (the second before a mistake).")


@flow(name="cloudsql-backups", description="The Cloud SQL instance's backups, newest first.", flow_run_name=run_name)
def cloudsql_backups(config_file: Text = CONFIG_PARAM) -> list[dict[str, Any]]:
    return list_backups(load_settings(config_file))


@flow(
    name="cloudsql-restore",
    description="Restore a Cloud SQL backup onto the instance (its data is replaced).",
    flow_run_name=run_name,
)
def cloudsql_restore(
    backup_id: Text = BACKUP, confirm: bool = CONFIRM, config_file: Text = CONFIG_PARAM
) -> dict[str, Any]:
    settings = load_settings(config_file)
    # a refusal pages nobody: nothing was done
    refuse_unconfirmed(settings.cloudsql_instance, str(backup_id or ""), confirm)
    try:
        result = restore_backup(settings, str(backup_id or ""))
    except BaseException as error:
        report_cloudsql(settings, "restore", str(backup_id), None, error)
        raise
    report_cloudsql(settings, "restore", str(backup_id), result)
    return result


@flow(
    name="cloudsql-clone",
    description="Clone the Cloud SQL instance to a point in time, into a new instance.",
    flow_run_name=run_name,
)
def cloudsql_clone(
    name: Text = NAME, point_in_time: WibTime = WHEN, config_file: Text = CONFIG_PARAM
) -> dict[str, Any]:
    settings = load_settings(config_file)
    try:
        if not name or point_in_time is None:
            from sppg_backup.errors import ConfigError

            raise ConfigError("give the new instance's name and the point in time to clone")
        result = clone_instance(settings, name, point_in_time)
    except BaseException as error:
        report_cloudsql(settings, "clone", str(name), None, error)
        raise
    report_cloudsql(settings, "clone", name, result)
    return result
