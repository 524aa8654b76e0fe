"""Serve every deployment from this process (no work pool): prefect.yaml is read, so the schedules, forms and
limits are those `prefect deploy --all` makes, defined once."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from sppg_backup.errors import ConfigError

PLACES = (Path(__file__).parents[1] / "prefect.yaml", Path.cwd() / "prefect.yaml")  # the checkout's


def prefect_yaml() -> Path:
    for place in PLACES:
        if place.is_file():
            return place
    raise ConfigError("prefect.yaml not found: run `sppg-backup serve` in the sppg-backup checkout")


def _limit(entry: dict[str, Any]) -> ConcurrencyLimitConfig | None:
    limit = entry.get("concurrency_limit")
    if not limit:
        return None
    strategy = ConcurrencyLimitStrategy(limit.get("collision_strategy", "ENQUEUE"))
    return ConcurrencyLimitConfig(limit=limit["limit"], collision_strategy=strategy)


def deployments() -> list[Any]:
    made = []
    for entry in yaml.safe_load(prefect_yaml().read_text())["deployments"]:
        module, _, name = entry["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
        made.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags"),
                schedules=[Cron(s["cron"], timezone=s["timezone"]) for s in entry.get("schedules", [])],
                concurrency_limit=_limit(entry),
                parameters=entry.get("parameters"),
                enforce_parameter_schema=entry.get("enforce_parameter_schema", True),
            )
        )
    return made


def serve_all() -> None:
    serve(*deployments())
