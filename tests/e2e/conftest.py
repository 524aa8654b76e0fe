"""The production path, shared by the e2e tests: prefect.yaml deployed to a real `prefect server`, and one
process worker started the way an operator starts it (settings from SPPG_BACKUP_CONFIG)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db import catalog, dump, postgres
from sppg_backup.sandbox.clusters import fill_sample
from sppg_backup.settings import load_settings
from sppg_backup.storage import destinations
from tests.dbcheck import table_contents

ROOT = Path(__file__).parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture(scope="session")
def deployed(prefect_server: str) -> str:
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    done = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    quiet_frequent_schedules(prefect_server)
    return prefect_server


def quiet_frequent_schedules(url: str, every_one: bool = False) -> None:
    """Turn off the schedules that would fire during the tests (uploads every 5 minutes, health every 15) so
    their runs do not load the worker; the daily and weekly ones stay as deployed (unless `every_one`)."""
    from tests.e2e.client import api

    async def work(client: Any) -> None:
        for found in await client.read_deployments():
            for schedule in found.schedules:
                cron = getattr(schedule.schedule, "cron", "")
                if cron.startswith("*/") or every_one:
                    await client.update_deployment_schedule(found.id, schedule.id, active=False)

    api(url, work)


@pytest.fixture(scope="session")
def worker_config(
    tmp_path_factory: pytest.TempPathFactory, erp_database: str, age_key: tuple[Path, str], webhook_server: Any
) -> Path:
    """The worker host's settings file: what scheduled runs (which pass no parameters) back up, and where to."""
    home = tmp_path_factory.mktemp("worker-host")
    config = home / "sppg-dump.toml"
    config.write_text(
        f'database_url = "{erp_database}"\nstorage_url = "{(home / "storage").as_uri()}"\n'
        f'local_dir = "{home / "local"}"\nage_recipients = ["{age_key[1]}"]\n'
        f'age_identity_file = "{age_key[0]}"\nstate_dir = "{home / "state"}"\n'
        f'notify_urls = ["{webhook_server.url}"]\nmin_backup_size = 10000\nretry_delay_seconds = 0\n'
        'uploads_dir = ""\n'
    )
    return config


def start_worker(
    api: str, config: Path, log: Path, docker_host: str, pool: str = "sppg-backup", queues: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")}
    env.update(
        {
            "PREFECT_API_URL": api,
            "DOCKER_HOST": docker_host,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "SPPG_BACKUP_CONFIG": str(config),
            # what it does, in its log, as an operator sees it (an in-process CLI test may have quietened it)
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",
        }
    )
    with open(log, "wb") as out:
        return subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, *(a for q in queues for a in ("--work-queue", q))],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )


@pytest.fixture(scope="session")
def worker(
    deployed: str, docker_engine: Any, worker_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A process worker on the pool `sppg-backup`; its API URL."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(deployed, worker_config, log, docker_engine.host)
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
    config = tmp_path / "sppg-dump.toml"
    config.write_text(
        f'database_url = "{url}"\nstorage_url = "{(tmp_path / "storage").as_uri()}"\n'
        f'local_dir = "{tmp_path / "local"}"\nage_recipients = ["{age_key[1]}"]\n'
        f'age_identity_file = "{age_key[0]}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        f'scratch_dir = "{tmp_path / "scratch"}"\nservices = ["backend-1", "backend-2"]\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        "service_stop_timeout_seconds = 1\nretry_delay_seconds = 0\n"
    )
    settings = load_settings(config)
    dest = destinations.open_destinations(settings)
    manifest = dump.dump(settings, dest, dump.reserve_id(dest.storage, datetime.now(UTC)))
    catalog.publish(dest, manifest)
    with postgres.connect(url) as conn:
        conn.execute("TRUNCATE order_items")
    yield {"url": url, "good": good, "backup": manifest, "config": config, "tmp": tmp_path, "engine": docker_engine}
    for container in docker_engine.client.containers.list(all=True):
        container.remove(force=True)
    with postgres.connect(postgres_cluster.url()) as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'erp_e2e%'").fetchall():
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
