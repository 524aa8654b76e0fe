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

PLACES = (Path(__file__).resolve().parents[1] / "prefect.yaml", Path.cwd() / "prefect.yaml")  # the checkout's


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


def _parameters(entry: dict[str, Any], config_file: str | None) -> dict[str, Any] | None:
    parameters = entry.get("parameters")
    if config_file is None:
        return parameters
    return {"config_file": config_file, **(parameters or {})}


def deployments(config_file: str | None = None) -> list[Any]:
    """Every deployment of prefect.yaml; `config_file` (serve --config) goes to the runs that name none."""
    made = []
    for entry in yaml.safe_load(prefect_yaml().read_text())["deployments"]:
        module, _, name = entry["entrypoint"].partition(":")
        flow = getattr(importlib.import_module("sppg_backup." + module.removesuffix(".py").replace("/", ".")), name)
        made.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags"),
                schedules=[Cron(s["cron"], timezone=s["timezone"]) for s in entry.get("schedules", [])],
                concurrency_limit=_limit(entry),
                parameters=_parameters(entry, config_file),
                enforce_parameter_schema=entry.get("enforce_parameter_schema", True),
            )
        )
    return made


def serve_all(config_file: str | None = None) -> None:
    serve(*deployments(config_file))
