"""restore-database deployed from prefect.yaml to a real Prefect server, run by a process worker, triggered
through the API with the form's parameters; and a failed run retried through the API, finished steps kept."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from sppg_backup import backup, postgres
from sppg_backup.catalog import list_backups
from sppg_backup.sandbox import fill_sample
from sppg_backup.settings import load_settings
from sppg_backup.storage.local import LocalStorage
from tests.dbcheck import table_contents

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def deployed(prefect_server: str) -> str:
    prefect = str(Path(sys.executable).with_name("prefect"))
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    done = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return prefect_server


@pytest.fixture(scope="module")
def worker(deployed: str, docker_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")}
    env.update(
        {
            "PREFECT_API_URL": deployed,
            "DOCKER_HOST": docker_engine.host,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    prefect = str(Path(sys.executable).with_name("prefect"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "sppg-backup"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield deployed
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def scene(
    worker: str, postgres_cluster: Any, docker_engine: Any, tmp_path: Path, age_key: tuple[Path, str]
) -> Iterator[dict[str, Any]]:
    """A live database with a backup of it, then damaged; backend containers; settings in a TOML file."""
    url = postgres_cluster.create_database("erp_e2e")
    fill_sample(url, scale=1)
    good = table_contents(url)
    for service in ("backend-1", "backend-2"):
        docker_engine.run(f"e2e-{service}", service=service)
    config = tmp_path / "sppg-backup.toml"
    config.write_text(
        f'database_url = "{url}"\nstorage_url = "{(tmp_path / "storage").as_uri()}"\n'
        f'local_dir = "{tmp_path / "local"}"\nage_recipients = ["{age_key[1]}"]\n'
        f'age_identity_file = "{age_key[0]}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        f'scratch_dir = "{tmp_path / "scratch"}"\nservices = ["backend-1", "backend-2"]\n'
        "service_stop_timeout_seconds = 1\nretry_delay_seconds = 0\n"
    )
    settings = load_settings(config)
    dest = backup.open_destinations(settings)
    manifest = backup.dump(settings, dest, backup.reserve_id(dest.storage, datetime.now(UTC)))
    backup.publish(dest, manifest)
    with postgres.connect(url) as conn:
        conn.execute("TRUNCATE order_items")
    yield {"url": url, "good": good, "backup": manifest, "config": config, "tmp": tmp_path, "engine": docker_engine}
    for container in docker_engine.client.containers.list(all=True):
        container.remove(force=True)
    with postgres.connect(postgres_cluster.url()) as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'erp_e2e%'").fetchall():
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def api(url: str, work: Any) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def call() -> Any:
        async with get_client() as client:
            return await work(client)

    with temporary_settings({PREFECT_API_URL: url}):
        return asyncio.run(call())


def trigger(url: str, parameters: dict[str, Any]) -> UUID:
    async def work(client: Any) -> UUID:
        deployment = await client.read_deployment_by_name("restore-database/on-demand")
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        return run.id  # type: ignore[no-any-return]

    return api(url, work)  # type: ignore[no-any-return]


def wait_final(url: str, run_id: UUID, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(url, lambda client: client.read_flow_run(run_id))
        if run.state and run.state.is_final():
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s")


def task_runs(url: str, run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return api(
        url,
        lambda client: client.read_task_runs(  # type: ignore[no-any-return]
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        ),
    )


def test_restore_triggered_through_the_api_with_form_parameters(scene: dict[str, Any], worker: str) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    run_id = trigger(
        worker, {"request": {"backup_id": scene["backup"].id, "confirm": True}, "config_file": str(scene["config"])}
    )
    run = wait_final(worker, run_id)
    assert run.state.type.value == "COMPLETED", run.state.message
    assert table_contents(scene["url"]) == scene["good"]
    engine = scene["engine"]
    assert {c.name: c.status for c in engine.client.containers.list(all=True)} == {
        "e2e-backend-1": "running",
        "e2e-backend-2": "running",
    }
    events = engine.client.events(
        since=since, until=datetime.now(UTC) + timedelta(seconds=2), decode=True, filters={"type": "container"}
    )
    actions = [(e["Actor"]["Attributes"]["name"], e["Action"]) for e in events if e["Action"] in ("stop", "start")]
    for name in ("e2e-backend-1", "e2e-backend-2"):
        assert [a for n, a in actions if n == name][-2:] == ["stop", "start"]


def test_a_retried_run_does_not_redo_finished_steps(scene: dict[str, Any], worker: str, postgres_cluster: Any) -> None:
    # pg_restore fails until a marker file exists: the restore step fails on the first attempt
    tools = scene["tmp"] / "bin"
    tools.mkdir()
    marker = scene["tmp"] / "pg_restore-may-run"
    for name in ("pg_dump", "pg_restore"):
        real = postgres_cluster.bin_dir / name
        gate = f'[ "$1" = --version ] || [ -e {marker} ] || {{ echo "pg_restore: error: disk full" >&2; exit 1; }}\n'
        (tools / name).write_text(f'#!/bin/sh\n{gate if name == "pg_restore" else ""}exec {real} "$@"\n')
        (tools / name).chmod(0o755)
    with open(scene["config"], "a") as config:
        config.write(f'pg_bin_dir = "{tools}"\n')
    run_id = trigger(worker, {"request": {"confirm": True}, "config_file": str(scene["config"])})
    run = wait_final(worker, run_id)
    assert run.state.type.value == "FAILED"
    first = {t.name.rsplit("-", 1)[0]: t.state.type.value for t in task_runs(worker, run_id)}
    assert first["safety-backup"] == "COMPLETED" and first["download-backup"] == "COMPLETED"
    assert first["restore-into-target"] == "FAILED"

    marker.touch()
    from prefect.states import Scheduled

    api(worker, lambda client: client.set_flow_run_state(run_id, Scheduled(), force=True))  # the UI's Retry
    run = wait_final(worker, run_id)
    assert run.state.type.value == "COMPLETED", run.state.message
    assert table_contents(scene["url"]) == scene["good"]
    runs = task_runs(worker, run_id)
    cached = sorted(t.name.rsplit("-", 1)[0] for t in runs if t.state.name == "Cached")
    assert cached == ["download-backup", "safety-backup"]
    backups = list_backups(LocalStorage(scene["tmp"] / "storage")).backups
    assert [m.purpose for m in backups] == ["backup", "safety"]  # one safety backup, not two
