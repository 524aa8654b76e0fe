"""Several ERP SPPG instances from one install: the instances file, and the deployments of prefect.yaml made once
per instance (its name in each deployment's name and tags, its settings file in each run's environment, its
hosts' queues)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sppg_backup.errors import ConfigError
from sppg_backup.settings import ENV_PREFIX, INSTANCE_PATTERN

TAG_PREFIX = "instance:"
QUEUES = ("database", "application")  # the roles of prefect.yaml's queues


class Instance(BaseModel):
    """One instance: its name, its settings file on the worker hosts, and the queues its hosts' workers take."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=INSTANCE_PATTERN)
    config: Path
    database_queue: str = Field("database", min_length=1)
    application_queue: str = Field("application", min_length=1)

    @field_validator("config")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path (the settings file on the worker hosts)")
        return value

    @property
    def tag(self) -> str:
        return instance_tag(self.name)

    def queue(self, role: str) -> str:
        return self.database_queue if role == "database" else self.application_queue


def instance_tag(name: str) -> str:
    return TAG_PREFIX + name


def read_instances(path: Path) -> list[Instance]:
    """The instances of a TOML file of `[instances.<name>]` tables; one error line naming what is wrong."""
    try:
        tables = tomllib.loads(path.read_text()).get("instances")
    except OSError as exc:
        raise ConfigError(f"instances file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"instances file {path}: {exc}") from None
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"instances file {path}: no [instances.<name>] table (e.g. [instances.site-a])")
    found = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"instances file {path}: instances.{name} is not a table")
        try:
            found.append(Instance(name=name, **table))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if field == "name":
                message = "a name is lower-case letters, digits and '-' (site-a), at most 40"
            raise ConfigError(f"instances file {path}: instance {name!r}: {field}: {message}") from None
    return found


def instance_deployments(base: dict[str, Any], instances: list[Instance]) -> dict[str, Any]:
    """prefect.yaml's content with each deployment made once per instance: `<instance>-<name>`, tagged
    `instance:<instance>`, on the instance's queue, its runs reading the instance's settings file."""
    made = []
    for instance in instances:
        for entry in base["deployments"]:
            entry = copy.deepcopy(entry)  # one object each: no YAML anchors in the file written
            pool = entry["work_pool"]
            role = pool.get("work_queue_name", "database")
            if role not in QUEUES:
                raise ConfigError(f"prefect.yaml: deployment {entry['name']} is on queue {role!r}, not one of {QUEUES}")
            env = dict(pool.get("job_variables", {}).get("env", {}))
            env |= {ENV_PREFIX + "CONFIG": str(instance.config), ENV_PREFIX + "INSTANCE": instance.name}
            variables = {**pool.get("job_variables", {}), "env": env}
            entry["work_pool"] = {**pool, "work_queue_name": instance.queue(role), "job_variables": variables}
            entry["name"] = f"{instance.name}-{entry['name']}"
            entry["tags"] = [*entry.get("tags", []), instance.tag]
            entry["description"] = f"[{instance.name}] {entry.get('description', '')}".rstrip()
            made.append(entry)
    return {key: value for key, value in base.items() if key != "definitions"} | {"deployments": made}


def instance_of(tags: list[str]) -> str | None:
    """The instance a deployment or run belongs to, from its tags."""
    return next((t.removeprefix(TAG_PREFIX) for t in tags if t.startswith(TAG_PREFIX)), None)


def belongs(tags: list[str], instance: str | None) -> bool:
    """Whether a deployment or run of these tags is the instance's (with none: one of no instance)."""
    return instance_of(tags) == instance
