"""recover-database-corruption: the guide's disaster scenario 1, steps 1 to 5, as one deployment."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from flows.restore_database import restore_database
from sppg_backup.settings import load_settings
from tasks.restore import RestoreRequest, find_errors, newest_verified, report_corruption


class CorruptionRecovery(BaseModel):
    """The form for scenario 1 in the Prefect UI."""

    services: list[str] | None = Field(
        default=None, description="Backend containers or Compose services (default SPPG_BACKUP_SERVICES)"
    )
    confirm: bool = Field(default=False, description="Required: the database is replaced by the newest verified backup")
    dry_run: bool = Field(default=False, description="Only look at the logs and show the plan")


@flow(
    name="recover-database-corruption",
    description="Scenario 1: errors in the logs, restore the newest verified backup, check users, restart.",
)
def recover_database_corruption(
    request: CorruptionRecovery | None = None, config_file: str | None = None
) -> dict[str, Any]:
    request = request or CorruptionRecovery()
    settings = load_settings(config_file)
    names = list(request.services) if request.services is not None else list(settings.services)
    errors: dict[str, list[str]] = {}
    try:
        # 1. Identify corruption in the backend's logs.
        errors = find_errors(names) if names else {}
        # 2-5. Stop the application, restore the newest verified backup, verify (users count), restart.
        result = restore_database(
            RestoreRequest(
                backup_id=newest_verified(settings),
                stop_services=names,
                keep_services_running=not names,
                confirm=request.confirm,
                dry_run=request.dry_run,
            ),
            config_file,
        )
    except BaseException as error:
        report_corruption(settings, errors, None, error, request.dry_run)
        raise
    report_corruption(settings, errors, result, None, request.dry_run)
    return {**result, "error_lines": {name: len(lines) for name, lines in errors.items()}}
