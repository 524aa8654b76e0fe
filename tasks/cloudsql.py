"""Tasks of the Cloud SQL flows: list the instance's backups, restore one onto it, clone it to a point in time,
each reported like every other restore."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db.cloudsql import CloudSql
from sppg_backup.display import shown_time
from sppg_backup.errors import ConfigError
from sppg_backup.ops.report import Report
from sppg_backup.settings import Settings
from sppg_backup.tasks.credentials import google_credentials
from sppg_backup.tasks.reporting import Entry, tell


def instance(settings: Settings) -> CloudSql:
    if not settings.gcp_project or not settings.cloudsql_instance:
        raise ConfigError("Cloud SQL needs SPPG_BACKUP_GCP_PROJECT and SPPG_BACKUP_CLOUDSQL_INSTANCE")
    credentials = google_credentials(settings)
    host = urlsplit(settings.cloudsql_api_url or "").hostname
    if credentials is None and host in ("127.0.0.1", "localhost", "::1"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # an API on this machine (the tests' fake of it): no Google login
    return CloudSql(
        settings.gcp_project,
        settings.cloudsql_instance,
        credentials,
        settings.cloudsql_api_url,
        settings.cloudsql_timeout_seconds,
        settings.cloudsql_poll_seconds,
    )


@task(name="list-cloudsql-backups", cache_policy=NO_CACHE)  # the client library retries a failed read itself
def list_backups(settings: Settings) -> list[dict[str, Any]]:
    runs = instance(settings).backups()
    get_run_logger().info("%d backups of Cloud SQL instance %s", len(runs), settings.cloudsql_instance)
    return [asdict(run) for run in runs]


@task(name="restore-cloudsql-backup", cache_policy=NO_CACHE)
def restore_backup(settings: Settings, backup_id: str) -> dict[str, Any]:
    """instances.restoreBackup, waited on: the instance's data is replaced by the backup's."""
    get_run_logger().info("restoring backup %s onto %s", backup_id, settings.cloudsql_instance)
    return instance(settings).restore(backup_id)


@task(name="clone-cloudsql-instance", cache_policy=NO_CACHE)
def clone_instance(settings: Settings, name: str, point_in_time: datetime) -> dict[str, Any]:
    """instances.clone with a point in time, waited on: a new instance; the source is not touched."""
    get_run_logger().info("cloning %s to %s at %s", settings.cloudsql_instance, name, point_in_time.isoformat())
    return instance(settings).clone(name, point_in_time)


@task(name="report-cloudsql", cache_policy=NO_CACHE)
def report_cloudsql(
    settings: Settings, action: str, subject: str, result: dict[str, Any] | None, error: BaseException | None = None
) -> None:
    where = f"Cloud SQL instance {settings.cloudsql_instance} (project {settings.gcp_project})"
    what = {"restore": f"restore of backup {subject} onto {where}", "clone": f"clone of {where} to {subject}"}[action]
    if error is None and result is not None:
        ended = result.get("endTime")
        told = Report(
            title=f"Cloud SQL {action} OK: {subject}",
            ok=True,
            summary=f"The {what} is done (operation {result.get('name')}"
            + (
                f", finished {shown_time(datetime.fromisoformat(ended.replace('Z', '+00:00')), settings.zone)})."
                if ended
                else ")."
            ),
            next_step="check the data there; for a clone, point the application at the new instance or copy back "
            "what is needed"
            if action == "clone"
            else "check the application",
        )
        entry = Entry(
            f"cloudsql.{action}",
            subject,
            "ok",
            {"instance": settings.cloudsql_instance, "operation": result.get("name")},
        )
    else:
        told = Report(
            title=f"Cloud SQL {action} FAILED: {subject}",
            ok=False,
            summary=f"The {what} failed: {error}",
            next_step="fix the cause above and run it again; `gcloud sql operations list --instance "
            f"{settings.cloudsql_instance}` shows what Cloud SQL did",
        )
        entry = Entry(f"cloudsql.{action}", subject, "failed", {"error": str(error)}, to_storage=False)
    tell(settings, f"cloudsql-{action}", told, entry)
