"""recover-database-corruption: the guide's disaster scenario 1, steps 1 to 5, as one deployment."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from sppg_backup.db.recovery import RestoreRequest
from sppg_backup.flows.restore_database import restore_database
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.common import run_name
from sppg_backup.tasks.restore import find_errors, newest_verified, report_corruption


class CorruptionRecovery(BaseModel):
    """The form for scenario 1 in the Prefect UI."""

    model_config = ConfigDict(frozen=True)

    services: list[str] = Field(
        default=[],
        description="The backend containers or Compose services (e.g. backend-1) whose logs are read for "
        "corruption errors and that are stopped during the restore. Leave empty for SPPG_BACKUP_SERVICES.",
    )
    keep_services_running: bool = Field(
        default=False, description="Read no logs and stop no service (for example when they are stopped already)."
    )
    confirm: bool = Field(
        default=False,
        description="Required: the production database is replaced by the newest verified backup. The current "
        "database is backed up first, to go back to.",
    )
    dry_run: bool = Field(
        default=False, description="Only read the logs and show the plan: which backup, what stops; nothing changes."
    )


DEFAULTS = CorruptionRecovery()  # a default, not None: the UI's form opens filled in
REQUEST = "Tick dry run first to see the errors found and the plan; then tick confirm and Submit."


@flow(
    name="recover-database-corruption",
    description="Scenario 1: errors in the logs, restore the newest verified backup, check users, restart.",
    flow_run_name=run_name,
)
def recover_database_corruption(
    request: CorruptionRecovery = Field(DEFAULTS, description=REQUEST),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    names = [] if request.keep_services_running else list(request.services or settings.services)
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
