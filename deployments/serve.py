"""Serve every deployment from this process (no work pool): the same schedules as prefect.yaml."""

from __future__ import annotations

from typing import Any

from prefect import serve
from prefect.schedules import Cron

from flows.backup_config import backup_config
from flows.backup_database import backup_database
from flows.backup_files import backup_files
from flows.backup_full_system import backup_full_system
from flows.check_backup_health import check_backup_health
from flows.prune_backups import prune_backups
from flows.prune_file_snapshots import prune_file_snapshots
from flows.recover_database_corruption import recover_database_corruption
from flows.recovery_drill import recovery_drill
from flows.restore_database import restore_database
from flows.restore_files import restore_config, restore_files
from flows.restore_full_system import restore_full_system
from flows.verify_backup import verify_backup

TIMEZONE = "Asia/Jakarta"


def deployments() -> list[Any]:
    return [
        backup_database.to_deployment(
            name="daily", schedule=Cron("0 3 * * *", timezone=TIMEZONE), description="The daily 03:00 WIB backup."
        ),
        verify_backup.to_deployment(
            name="daily",
            schedule=Cron("0 4 * * *", timezone=TIMEZONE),
            description="Verify the newest backup with a test restore, daily at 04:00 WIB.",
        ),
        recovery_drill.to_deployment(
            name="weekly",
            schedule=Cron("0 5 * * 0", timezone=TIMEZONE),
            description="The weekly recovery test, Sundays at 05:00 WIB: RTO and RPO.",
        ),
        check_backup_health.to_deployment(
            name="every-15-minutes",
            schedule=Cron("*/15 * * * *", timezone=TIMEZONE),
            description="The guide's alert conditions.",
        ),
        backup_files.to_deployment(
            concurrency_limit=1,
            name="every-5-minutes",
            schedule=Cron("*/5 * * * *", timezone=TIMEZONE),
            description="Incremental snapshot of the uploaded files.",
        ),
        backup_config.to_deployment(
            concurrency_limit=1,
            name="every-10-minutes",
            schedule=Cron("*/10 * * * *", timezone=TIMEZONE),
            description="Snapshot of the configuration files when they changed.",
        ),
        prune_file_snapshots.to_deployment(
            concurrency_limit=1,
            name="daily",
            schedule=Cron("30 2 * * *", timezone=TIMEZONE),
            description="Uploads lifecycle: 90 days, 5 versions of each file.",
        ),
        backup_full_system.to_deployment(
            name="weekly",
            schedule=Cron("0 1 * * 0", timezone=TIMEZONE),
            description="Full-system backup: database, application files, images, config.",
        ),
        restore_full_system.to_deployment(name="on-demand", description="The guide's complete system restore."),
        restore_files.to_deployment(name="on-demand", description="Restore uploaded files from a snapshot."),
        restore_config.to_deployment(name="on-demand", description="Restore the configuration files."),
        restore_database.to_deployment(
            name="on-demand",
            description="The guide's manual database restore.",
            enforce_parameter_schema=False,  # the form lists backups; a script may pass a bare id
        ),
        recover_database_corruption.to_deployment(name="on-demand", description="Disaster scenario 1."),
        prune_backups.to_deployment(
            name="manual", parameters={"dry_run": True}, description="Apply retention now (dry run unless unticked)."
        ),
    ]


def serve_all() -> None:
    serve(*deployments())
