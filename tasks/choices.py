"""The restore form's list of backups: after every backup, verification, restore and prune (and every health
check, which heals the list after a `prefect deploy` reset it), the restore-database deployments' parameter
schema offers the current backups as the choices of backup_id, so the UI draws a dropdown."""

from __future__ import annotations

import copy
import logging
from typing import Any

from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.settings import PREFECT_API_URL

from sppg_backup.catalog import list_backups
from sppg_backup.forms import NEWEST
from sppg_backup.settings import Settings
from tasks.common import destinations

log = logging.getLogger("sppg_backup.choices")
FLOW = "restore-database"
MOST = 200  # newest first; older ones are still restored by id from the CLI


def with_choices(schema: dict[str, Any], choices: list[str]) -> dict[str, Any]:
    """The deployment's parameter schema with backup_id offering `choices` (NEWEST first, and the default)."""
    schema = copy.deepcopy(schema)
    field = schema.get("definitions", {}).get("RestoreRequest", {}).get("properties", {}).get("backup_id")
    if field is None:
        return schema
    field.update({"type": "string", "enum": [NEWEST, *choices], "default": NEWEST})
    default = schema.get("properties", {}).get("request", {}).get("default")
    if isinstance(default, dict):
        default["backup_id"] = NEWEST
    return schema


@task(name="offer-backups", cache_policy=NO_CACHE, timeout_seconds=120)
def offer_backups(settings: Settings) -> int:
    """Put the current backups in the restore form's list; how many deployments were updated. Never fails the
    run it is part of: a stale list is still checked by the restore."""
    if not PREFECT_API_URL.value():
        return 0  # no Prefect server, no form
    try:
        backups = list_backups(destinations(settings).storage).backups
        choices = [m.choice(settings.zone) for m in reversed(backups)][:MOST]
        updated = 0
        with get_client(sync_client=True) as client:
            for found in client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW]))):
                schema = with_choices(found.parameter_openapi_schema or {}, choices)
                if schema != found.parameter_openapi_schema:
                    client.update_deployment(found.id, DeploymentUpdate(parameter_openapi_schema=schema))
                    updated += 1
        return updated
    except Exception as exc:
        log.warning("could not update the restore form's list of backups: %s", exc)
        return 0
