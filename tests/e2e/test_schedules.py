"""The scheduler really runs the backups: the server creates the scheduled run, a worker (or `sppg-backup serve`)
executes it to Completed, and the backup is in storage. Nobody presses a button."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.sandbox.clusters import prefect_server
from sppg_backup.settings import load_settings
from sppg_backup.storage import open_storage
from tests.conftest import SCHEDULER_EVERY_10_SECONDS
from tests.e2e.client import api, artifacts, deployment, trigger, wait_final

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]


def scheduled_runs(url: str, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    return api(  # type: ignore[no-any-return]
        url,
        lambda client: client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        ),
    )


@contextlib.contextmanager
def firing_soon(url: str, deployment_id: Any) -> Iterator[None]:
    """A second schedule while the block runs, its first run due in 20 seconds (the scheduler, on a 10 s loop
    here, makes runs from now on only), the next one in 10 minutes. Removed afterwards with the runs it left."""
    from prefect.client.schemas.schedules import IntervalSchedule

    soon = datetime.now(UTC) + timedelta(seconds=20)
    every = IntervalSchedule(interval=timedelta(minutes=10), anchor_date=soon)
    [made] = api(url, lambda client: client.create_deployment_schedules(deployment_id, [(every, True)]))
    try:
        yield
    finally:
        api(url, lambda client: client.delete_deployment_schedule(deployment_id, made.id))
        for run in scheduled_runs(url, deployment_id):
            if run.state.name == "Scheduled" and run.expected_start_time < datetime.now(UTC) + timedelta(hours=1):
                api(url, lambda client, run=run: client.delete_flow_run(run.id))


def wait_for_scheduled_run(url: str, deployment_id: Any, timeout: float = 180) -> Any:
    """The first run the server's scheduler made (auto_scheduled) that has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = [
            r
            for r in scheduled_runs(url, deployment_id)
            if r.auto_scheduled and r.expected_start_time <= datetime.now(UTC) and r.state.name != "Scheduled"
        ]
        if started:
            return wait_final(url, started[0].id)
        time.sleep(2)
    raise AssertionError("the scheduler created no run that started")


def stored_backups(config: Path) -> list[Any]:
    return list_backups(open_storage(load_settings(config).storage_url)).backups


def assert_daily_run_at_three_wib(url: str, deployment_id: Any, timeout: float = 30) -> None:
    """The server made the upcoming 03:00 WIB runs of the deployed schedule (a new deployment's within seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        upcoming = [r for r in scheduled_runs(url, deployment_id) if r.state.name == "Scheduled" and r.auto_scheduled]
        times = {r.expected_start_time.astimezone(ZoneInfo("Asia/Jakarta")).strftime("%H:%M") for r in upcoming}
        if "03:00" in times:
            return
        assert time.monotonic() < deadline, f"no upcoming 03:00 WIB run: {sorted(times)}"
        time.sleep(1)


@pytest.fixture(scope="module")
def scheduled_backup(worker: str, worker_config: Path) -> tuple[Any, int]:
    """The deployed backup-database given a schedule due now: the run the server made and the worker ran, and
    how many backups were stored before it."""
    found = deployment(worker, "backup-database/daily")
    before = len(stored_backups(worker_config))
    assert_daily_run_at_three_wib(worker, found.id)
    with firing_soon(worker, found.id):
        return wait_for_scheduled_run(worker, found.id), before


def test_the_server_schedules_the_daily_backup_and_the_worker_runs_it(
    scheduled_backup: tuple[Any, int], worker_config: Path
) -> None:
    run, before = scheduled_backup
    assert run.state.type.value == "COMPLETED", run.state.message
    backups = stored_backups(worker_config)
    assert len(backups) == before + 1 and backups[-1].purpose == "backup"


def status(url: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")}
    env.update({"PREFECT_API_URL": url, "SPPG_BACKUP_CONFIG": str(config)})
    return subprocess.run(
        [sys.executable, "-m", "sppg_backup", "status"], env=env, capture_output=True, text=True, timeout=120
    )


def schedule_alerts(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if "ALERT schedule_" in line]


def test_status_alerts_when_the_daily_backup_has_no_upcoming_run_or_its_last_run_crashed(
    scheduled_backup: tuple[Any, int], worker: str, worker_config: Path
) -> None:
    from prefect.states import Crashed

    run, _ = scheduled_backup
    found = deployment(worker, "backup-database/daily")
    assert_daily_run_at_three_wib(worker, found.id)  # a schedule change makes the server schedule the runs anew
    assert schedule_alerts(status(worker, worker_config)) == []
    api(worker, lambda client: client.pause_deployment(found.id))  # paused: no run at 03:00 WIB
    try:
        done = status(worker, worker_config)
        assert done.returncode == 1
        [line] = schedule_alerts(done)
        assert "schedule_missing_backup_database" in line and "no scheduled run in the next 25 hours" in line
        # The same alert from the health check the server runs every 15 minutes, in its result and artifact.
        check = trigger(worker, {"config_file": str(worker_config)}, "check-backup-health/every-15-minutes")
        result = wait_final(worker, check)
        assert result.state.type.value == "COMPLETED", result.state.message
        [report] = [a for a in artifacts(worker, check) if a.type == "markdown"]
        assert "schedule_missing_backup_database" in str(report.data) and "alert" in str(report.description)
    finally:
        api(worker, lambda client: client.resume_deployment(found.id))
    assert_daily_run_at_three_wib(worker, found.id)
    api(worker, lambda client: client.set_flow_run_state(run.id, Crashed(), force=True))
    [line] = schedule_alerts(status(worker, worker_config))
    assert "schedule_crashed_backup_database" in line and run.name in line


@pytest.fixture
def served(
    tmp_path_factory: pytest.TempPathFactory, worker_config: Path, docker_engine: Any
) -> Iterator[tuple[str, Path]]:
    """`sppg-backup serve` on its own real server (its deployments share names with prefect.yaml's)."""
    with prefect_server(tmp_path_factory.mktemp("serve-home"), **SCHEDULER_EVERY_10_SECONDS) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")}
        env.update(
            {"PREFECT_API_URL": url, "SPPG_BACKUP_CONFIG": str(worker_config), "DOCKER_HOST": docker_engine.host}
        )
        log = tmp_path_factory.mktemp("serve") / "serve.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "sppg_backup", "serve"], env=env, stdout=out, stderr=out)
        try:
            yield url, log
        finally:
            proc.terminate()
            proc.wait(30)


def test_sppg_backup_serve_runs_the_scheduled_backup(served: tuple[str, Path], worker_config: Path) -> None:
    url, log = served
    deadline = time.monotonic() + 60
    while True:
        try:
            found = deployment(url, "backup-database/daily")
            break
        except Exception:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
    before = len(stored_backups(worker_config))
    assert_daily_run_at_three_wib(url, found.id)
    with firing_soon(url, found.id):
        run = wait_for_scheduled_run(url, found.id)
    assert run.state.type.value == "COMPLETED", run.state.message
    assert len(stored_backups(worker_config)) == before + 1
