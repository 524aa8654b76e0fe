"""The production topology from nothing, as the README's Prefect section and the shipped units say: the Prefect
server on its own PostgreSQL (the command and environment of deployments/prefect-server.service), the pool and
`prefect deploy --all`, a worker on the database queue (deployments/sppg-backup-worker@.service), and the daily
backup run by that worker. Real processes throughout; only the unit's paths and port are this machine's."""

from __future__ import annotations

import configparser
import os
import shlex
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.sandbox.clusters import Cluster, free_port, prefect_database, wait_for
from sppg_backup.settings import load_settings
from sppg_backup.storage import open_storage
from tests.e2e.client import deployment, trigger, wait_final
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e
BIN = str(Path(sys.executable).parent)


def unit(name: str, instance: str = "") -> tuple[list[str], dict[str, str], configparser.SectionProxy]:
    """A shipped unit's ExecStart (the checkout's .venv for /opt/sppg-backup/.venv) and its Environment= lines."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "deployments" / name)
    service = parser["Service"]
    line = service["ExecStart"].replace("/opt/sppg-backup/.venv/bin", BIN)
    line = line.replace("%i", instance).replace("%H", socket.gethostname())
    lines = (ROOT / "deployments" / name).read_text().splitlines()  # configparser keeps one Environment= of many
    env = dict(line.removeprefix("Environment=").split("=", 1) for line in lines if line.startswith("Environment="))
    return shlex.split(line), env, service


def test_the_readme_topology_runs_a_backup_on_the_database_hosts_worker(
    worker_config: Path, tmp_path: Path, docker_engine: Any
) -> None:
    cluster = Cluster().start()  # the server's own PostgreSQL, not the ERP's
    processes: list[subprocess.Popen[bytes]] = []
    try:
        command, env, service = unit("prefect-server.service")
        assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"].endswith("lease_storage.filesystem")
        assert "--workers" not in command  # one process: more need Redis
        port = free_port()
        command[command.index("--port") + 1] = str(port)
        api = f"http://127.0.0.1:{port}/api"
        server_env = {k: v for k, v in os.environ.items() if not k.startswith(("SPPG_BACKUP_", "PREFECT_"))}
        server_env |= env | {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_UI_API_URL": api}
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_database(cluster)  # the EnvironmentFile's
        with open(tmp_path / "server.log", "wb") as log:
            processes.append(subprocess.Popen(command, env=server_env, stdout=log, stderr=log))
        wait_for(api + "/health", processes[0], tmp_path / "server.log", 120)
        # README: the pool, every deployment on its queue, the automations
        client_env = {**os.environ, "PREFECT_API_URL": api}
        deploy = [f"{BIN}/sppg-backup", "deployments", "--apply"]  # the README's deploy step, from the checkout
        done = subprocess.run(deploy, cwd=ROOT, env=client_env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "automation 'sppg-backup: a run whose heartbeats stopped is Crashed': after 300 s" in done.stdout
        # the database host's worker, as its unit starts it
        command, env, service = unit("sppg-backup-worker@.service", "database")
        assert command[1:6] == ["worker", "start", "--pool", "sppg-backup", "--work-queue"] and command[6] == "database"
        assert service["WorkingDirectory"] == "/opt/sppg-backup" and "SPPG_BACKUP_CONFIG" in env
        worker_env = {k: v for k, v in os.environ.items() if not k.startswith(("SPPG_BACKUP_", "PREFECT_"))}
        worker_env |= env | {"SPPG_BACKUP_CONFIG": str(worker_config), "PREFECT_API_URL": api}
        worker_env |= {"DOCKER_HOST": docker_engine.host, "PREFECT_WORKER_QUERY_SECONDS": "1"}
        with open(tmp_path / "worker.log", "wb") as log:
            processes.append(subprocess.Popen(command, cwd=ROOT, env=worker_env, stdout=log, stderr=log))
        assert deployment(api, "backup-database/daily").work_queue_name == "database"
        run = wait_final(api, trigger(api, {}, "backup-database/daily"), timeout=180)
        assert run.state.is_completed(), (run.state, (tmp_path / "worker.log").read_text()[-3000:])
        assert f"submitting flow run '{run.id}'" in (tmp_path / "worker.log").read_text()
        storage = open_storage(load_settings(str(worker_config)).storage_url)
        assert any(m.created_at >= run.start_time - timedelta(seconds=1) for m in list_backups(storage).backups)
    finally:
        for proc in reversed(processes):
            proc.terminate()
            proc.wait(60)
        cluster.stop()
