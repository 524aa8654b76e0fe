"""The restore forms' lists: after every backup, verification, restore and prune (and every health check, which
heals the lists after a `prefect deploy` reset them), the restore deployments' parameter schemas offer what is
in storage as the choices of their id field, so the UI draws a dropdown."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.settings import PREFECT_API_URL

from sppg_backup.db.catalog import list_backups
from sppg_backup.display import human_size
from sppg_backup.files import snapshots
from sppg_backup.forms import NEWEST, NEWEST_SET, NEWEST_SNAPSHOT
from sppg_backup.full import system
from sppg_backup.instances import belongs
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage
from sppg_backup.tasks.common import destinations, of_instance

log = logging.getLogger("sppg_backup.choices")
MOST = 200  # newest first; older ones are still restored by id from the CLI


def _when(moment: Any, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "")


def _dumps(storage: Storage, zone: ZoneInfo) -> list[str]:
    return [m.choice(zone) for m in reversed(list_backups(storage).backups)]


def _sets(storage: Storage, zone: ZoneInfo) -> list[str]:
    found, _ = system.list_sets(storage)
    return [
        " · ".join([s.id, _when(s.created_at, zone), human_size(sum(p.size for p in s.parts)), f"{len(s.parts)} parts"])
        for s in reversed(found)
    ]


def _snapshots(kind: snapshots.SnapshotKind) -> Callable[[Storage, ZoneInfo], list[str]]:
    def labels(storage: Storage, zone: ZoneInfo) -> list[str]:
        return [
            " · ".join([s.id, _when(s.created_at, zone), f"{s.files} files", human_size(s.bytes)])
            for s in reversed(snapshots.list_snapshots(storage, kind, newest=MOST).snapshots)
        ]

    return labels


@dataclass(frozen=True)
class Menu:
    """One dropdown: the flow's form, the model and field it fills, its first ("newest") choice, its labels."""

    flow: str
    model: str
    field: str
    first: str
    labels: Callable[[Storage, ZoneInfo], list[str]]


MENUS = {
    "restore-database": Menu("restore-database", "RestoreRequest", "backup_id", NEWEST, _dumps),
    "restore-full-system": Menu("restore-full-system", "FullRestoreRequest", "set_id", NEWEST_SET, _sets),
    "restore-files": Menu("restore-files", "FilesRestoreRequest", "snapshot_id", NEWEST_SNAPSHOT, _snapshots("files")),
    "restore-config": Menu(
        "restore-config", "FilesRestoreRequest", "snapshot_id", NEWEST_SNAPSHOT, _snapshots("config")
    ),
}
DATABASE = ("restore-database",)  # what a database backup, verify, restore or prune changes
FULL = ("restore-database", "restore-full-system", "restore-config")  # a full set holds a dump and a snapshot


def with_choices(schema: dict[str, Any], menu: Menu, choices: list[str]) -> dict[str, Any]:
    """The deployment's parameter schema with the menu's field offering `choices` (its first choice first, and
    the default)."""
    schema = copy.deepcopy(schema)
    field = schema.get("definitions", {}).get(menu.model, {}).get("properties", {}).get(menu.field)
    if field is None:
        return schema
    field.update({"type": "string", "enum": [menu.first, *choices[:MOST]], "default": menu.first})
    default = schema.get("properties", {}).get("request", {}).get("default")
    if isinstance(default, dict):
        default[menu.field] = menu.first
    return schema


@task(name="offer-backups", cache_policy=NO_CACHE, timeout_seconds=120)
def offer_backups(settings: Settings, flows: tuple[str, ...] = tuple(MENUS)) -> int:
    """Put what is in storage in the lists of these flows' forms; how many deployments were updated. Never fails
    the run it is part of: a stale list is still checked by the restore."""
    if not PREFECT_API_URL.value():
        return 0  # no Prefect server, no form
    try:
        storage = destinations(settings).storage
        updated = 0
        with get_client(sync_client=True) as client:
            found = client.read_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))),
                deployment_filter=of_instance(settings.instance),
            )
            found = [d for d in found if belongs(d.tags, settings.instance)]  # never another instance's form
            if not found:
                return 0
            names = {
                f.id: f.name for f in client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))))
            }
            labels: dict[str, list[str]] = {}
            for deployment in found:
                menu = MENUS[names[deployment.flow_id]]
                if menu.flow not in labels:
                    labels[menu.flow] = menu.labels(storage, settings.zone)
                schema = with_choices(deployment.parameter_openapi_schema or {}, menu, labels[menu.flow])
                if schema != deployment.parameter_openapi_schema:
                    client.update_deployment(deployment.id, DeploymentUpdate(parameter_openapi_schema=schema))
                    updated += 1
        return updated
    except Exception as exc:
        log.warning("could not update the restore forms' lists: %s", exc)
        return 0
