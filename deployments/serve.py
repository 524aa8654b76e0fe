"""Serve every deployment from this process (no work pool): the schedules of prefect.yaml."""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from flows.backup_database import backup_database
from flows.prune_backups import prune_backups

TIMEZONE = "Asia/Jakarta"


def deployments() -> list:  # type: ignore[type-arg]
    return [
        backup_database.to_deployment(
            name="daily",
            schedule=Cron("0 3 * * *", timezone=TIMEZONE),
            description="The guide's daily 03:00 WIB backup.",
        ),
        prune_backups.to_deployment(name="manual", description="Apply retention now."),
    ]


def serve_all() -> None:
    serve(*deployments())
