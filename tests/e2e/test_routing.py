"""One work pool, a queue per role: `prefect deploy` routes each deployment to the queue of the host that holds its
data (prefect.yaml), and a worker started on one queue takes that host's runs and never the other's."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.client import deployment, trigger, wait_final
from tests.e2e.conftest import PREFECT, ROOT, start_worker

pytestmark = pytest.mark.e2e
POOL = "sppg-routing"  # its own pool: the session's worker (all queues of sppg-backup) stays out of it


def deploy_like_prefect_yaml(api: str, entrypoint: str) -> str:
    """`prefect deploy` of one entrypoint onto POOL with the queue prefect.yaml gives it; the queue."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    [entry] = [d for d in config["deployments"] if d["entrypoint"] == entrypoint]
    queue = entry["work_pool"]["work_queue_name"]
    args = [PREFECT, "--no-prompt", "deploy", entrypoint, "-n", "routing", "-p", POOL, "-q", queue]
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, "PREFECT_API_URL": api}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return str(queue)


def test_a_worker_on_a_hosts_queue_takes_only_that_hosts_runs(
    deployed: str, prefect_server: str, worker_config: Path, docker_engine: Any, tmp_path: Path
) -> None:
    # `prefect deploy --all` put each deployment on its host's queue
    assert deployment(deployed, "backup-database/daily").work_queue_name == "database"
    assert deployment(deployed, "restore-pitr/on-demand").work_queue_name == "database"
    assert deployment(deployed, "backup-files/every-5-minutes").work_queue_name == "application"
    assert deployment(deployed, "backup-full-system/weekly").work_queue_name == "application"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    subprocess.run([PREFECT, "work-pool", "create", POOL, "--type", "process"], env=env, capture_output=True)
    assert deploy_like_prefect_yaml(prefect_server, "flows/check_backup_health.py:check_backup_health") == "database"
    assert deploy_like_prefect_yaml(prefect_server, "flows/backup_config.py:backup_config") == "application"
    logs = {queue: tmp_path / f"{queue}.log" for queue in ("database", "application")}
    workers = [
        start_worker(prefect_server, worker_config, log, docker_engine.host, POOL, (queue,))
        for queue, log in logs.items()
    ]
    try:
        runs = {
            "database": trigger(prefect_server, {}, "check-backup-health/routing"),
            "application": trigger(prefect_server, {}, "backup-config/routing"),
        }
        # failed or not: what matters is who ran it
        ended = {queue: wait_final(prefect_server, run_id, timeout=180) for queue, run_id in runs.items()}
        time.sleep(1)
        said = {queue: log.read_text() for queue, log in logs.items()}
        for queue, run_id in runs.items():
            other = "application" if queue == "database" else "database"
            why = f"{ended[queue].state!r}; {said}"
            assert f"submitting flow run '{run_id}'" in said[queue], why
            assert str(run_id) not in said[other], why
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(30)
