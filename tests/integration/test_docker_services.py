"""Docker services on a real engine: by container name or Compose service, stop, start, wait for health."""

from __future__ import annotations

from typing import Any

import pytest

from sppg_backup.errors import NotFoundError, PermanentError
from sppg_backup.ops import containers

pytestmark = pytest.mark.integration


def status(engine: Any, name: str) -> str:
    container = engine.client.containers.get(name)
    container.reload()
    return str(container.status)


def test_resolve_by_container_name_and_compose_service(docker_host: Any) -> None:
    docker_host.run("erp-sppg-backend-1", service="backend-1")
    docker_host.run("nginx", service="web")
    client = containers.connect()
    by_service = containers.resolve(client, ["backend-1"])
    by_name = containers.resolve(client, ["nginx"])
    assert [s.container_name for s in by_service] == ["erp-sppg-backend-1"]
    assert [s.container_name for s in by_name] == ["nginx"]
    with pytest.raises(NotFoundError, match="unknown service backend-9"):
        containers.resolve(client, ["backend-9"])


def test_stop_then_start_only_what_was_running_and_wait_for_health(docker_host: Any) -> None:
    docker_host.run("backend-1", service="backend-1", healthy=True)
    docker_host.run("backend-2", service="backend-2")
    docker_host.run("stopped-on-purpose").stop(timeout=1)
    client = containers.connect()
    services = containers.resolve(client, ["backend-1", "backend-2", "stopped-on-purpose"])
    containers.stop(client, services, timeout=1)
    assert [status(docker_host, n) for n in ("backend-1", "backend-2")] == ["exited", "exited"]
    containers.start(client, services, wait_seconds=30)
    assert [status(docker_host, n) for n in ("backend-1", "backend-2")] == ["running", "running"]
    health = docker_host.client.containers.get("backend-1").attrs["State"]["Health"]["Status"]
    assert health == "healthy"
    assert status(docker_host, "stopped-on-purpose") == "exited"


def test_error_lines_from_the_logs(docker_host: Any) -> None:
    docker_host.run(
        "backend-1",
        service="backend-1",
        command=["/bin/sh", "-c", "echo started; echo 'ERROR: invalid page in block 42'; sleep 60"],
    )
    client = containers.connect()
    services = containers.resolve(client, ["backend-1"])
    for _ in range(50):
        found = containers.error_lines(client, services)
        if found["backend-1"]:
            break
    assert found == {"backend-1": ["ERROR: invalid page in block 42"]}


def test_unreachable_engine_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(PermanentError, match="cannot reach the Docker engine"):
        containers.connect()
