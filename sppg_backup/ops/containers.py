"""The application's Docker services: find them by container name or Compose service, stop, start, wait."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from sppg_backup.errors import NotFoundError, PermanentError, TransientError

COMPOSE_SERVICE = "com.docker.compose.service"


def connect() -> Any:
    """A Docker client for the engine DOCKER_HOST names (as the docker CLI does), else the local socket."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (DOCKER_HOST is not set)"
        reason = "no such socket" if "FileNotFoundError" in str(exc) else _first_line(exc)
        raise PermanentError(f"cannot reach the Docker engine at {where}: {reason}; is dockerd running?") from None
    return client


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True)
class Service:
    name: str  # as asked for: a container name or a Compose service name
    container_id: str
    container_name: str
    was_running: bool


def resolve(client: Any, names: list[str]) -> list[Service]:
    """Each name is a container name or a Compose service (all its containers); an unknown name is an error."""
    services = []
    for name in names:
        found = client.containers.list(all=True, filters={"name": f"^/?{name}$"})
        found = found or client.containers.list(all=True, filters={"label": f"{COMPOSE_SERVICE}={name}"})
        if not found:
            raise NotFoundError(
                f"unknown service {name}: no container and no Compose service of that name "
                "on this Docker engine; check SPPG_BACKUP_SERVICES or --stop-services"
            )
        services += [Service(name, c.id, c.name, c.status == "running") for c in found]
    return services


def resolve_existing(client: Any, names: list[str]) -> tuple[list[Service], list[str]]:
    """Like resolve, but names with no container are returned apart (a fresh engine after a disaster)."""
    found: list[Service] = []
    missing: list[str] = []
    for name in names:
        try:
            found += resolve(client, [name])
        except NotFoundError:
            missing.append(name)
    return found, missing


def still_there(client: Any, services: list[Service]) -> list[Service]:
    """The services whose container still exists (a recorded one may have been removed since)."""
    from docker.errors import NotFound

    present = []
    for service in services:
        try:
            client.containers.get(service.container_id)
        except NotFound:
            continue
        present.append(service)
    return present


def stop(client: Any, services: list[Service], timeout: int = 30) -> None:
    """Stop the running ones; if one cannot be stopped, start again those already stopped, then fail."""
    stopped: list[Service] = []
    try:
        for service in services:
            if service.was_running:
                client.containers.get(service.container_id).stop(timeout=timeout)
                stopped.append(service)
    except Exception as exc:
        start(client, stopped)
        raise TransientError(f"cannot stop {service.container_name}: {_first_line(exc)}") from None


def start(client: Any, services: list[Service], wait_seconds: float = 120) -> None:
    """Start what was running before and wait until it runs (and is healthy, when it has a healthcheck)."""
    wanted = [s for s in services if s.was_running]
    for service in wanted:
        client.containers.get(service.container_id).start()
    deadline = time.monotonic() + wait_seconds
    waiting = wanted
    while waiting:
        waiting = [s for s in waiting if not _ready(client.containers.get(s.container_id))]
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.container_name for s in waiting)
            raise TransientError(f"services not running (or not healthy) {wait_seconds:g} s after start: {names}")
        if waiting:
            time.sleep(0.5)


def _ready(container: Any) -> bool:
    container.reload()
    if container.status != "running":
        return False
    health = container.attrs.get("State", {}).get("Health")
    return health is None or health.get("Status") == "healthy"


def error_lines(client: Any, services: list[Service], tail: int = 500) -> dict[str, list[str]]:
    """Log lines mentioning an error, per container (the guide: docker-compose logs backend-1 | grep -i error)."""
    found = {}
    for service in services:
        logs = client.containers.get(service.container_id).logs(tail=tail).decode(errors="replace")
        found[service.container_name] = [line for line in logs.splitlines() if "error" in line.lower()]
    return found
