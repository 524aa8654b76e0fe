"""The stack's Compose file, run with the Compose tool the host has (`docker compose`, else docker-compose v1):
which service is the database, start it alone, then the rest."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sppg_backup.errors import CheckFailed, ConfigError


def find_file(config_paths: list[str]) -> Path | None:
    """The Compose file: the docker-compose*.yml (or compose*.yaml) among CONFIG_PATHS."""
    for raw in config_paths:
        path = Path(raw)
        if path.name.startswith(("docker-compose", "compose")) and path.suffix in (".yml", ".yaml"):
            return path
    return None


@dataclass(frozen=True)
class Stack:
    """A Compose file and what it runs."""

    file: Path
    services: dict[str, Any]

    @classmethod
    def read(cls, file: Path) -> Stack:
        try:
            loaded = yaml.safe_load(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"the Compose file {file} is not there: it was not in the backup") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"the Compose file {file} cannot be read: {str(exc).splitlines()[0]}") from None
        services = loaded.get("services") if isinstance(loaded, dict) else None
        if not isinstance(services, dict) or not services:
            raise ConfigError(f"the Compose file {file} names no services")
        return cls(file, {str(k): v if isinstance(v, dict) else {} for k, v in services.items()})

    def database(self, db_container: str | None) -> str | None:
        """The database's service: DB_CONTAINER (a service or container name), else the one postgres image."""
        if db_container:
            for name, spec in self.services.items():
                if db_container in (name, spec.get("container_name")):
                    return name
            raise ConfigError(f"DB_CONTAINER {db_container} is not a service of {self.file}")
        found = [n for n, s in self.services.items() if _image_name(s).startswith(("postgres", "postgis"))]
        return found[0] if len(found) == 1 else None


def _image_name(spec: dict[str, Any]) -> str:
    image = str(spec.get("image") or "")
    return image.rsplit("/", 1)[-1]


def tool() -> list[str]:
    """`docker compose` (v2) when the docker CLI has it, else docker-compose (v1)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    raise ConfigError("no Compose tool on this host: install it (apt-get install docker-compose) and run again")


def run(stack: Stack, *args: str, timeout: float = 900) -> str:
    """One Compose command on the stack, from the file's folder (its .env is read as the project's)."""
    command = [*tool(), "-f", str(stack.file), "--project-directory", str(stack.file.parent), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=stack.file.parent)
    except subprocess.TimeoutExpired:
        raise CheckFailed("compose", f"`compose {' '.join(args)}` did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        said = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
        raise CheckFailed("compose", f"`compose {' '.join(args)}` failed: {' '.join(said) or done.returncode}")
    return done.stdout


def container_of(client: Any, stack: Stack, service: str) -> Any:
    """The container Compose made for `service` of this stack."""
    from sppg_backup.ops.containers import COMPOSE_SERVICE

    project = run(stack, "ps", "-q", service).split()
    found = [c for c in client.containers.list(all=True, filters={"label": f"{COMPOSE_SERVICE}={service}"})]
    found = [c for c in found if not project or c.id in project or c.id[:12] in {p[:12] for p in project}]
    if len(found) != 1:
        raise CheckFailed("compose", f"Compose made {len(found)} containers for the database service {service}")
    return found[0]
