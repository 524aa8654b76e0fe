"""A worker that dies mid-run, on a real Prefect server (on PostgreSQL) with the automation the deploy step applies:
the run's heartbeats stop, the server marks it Crashed and sends the critical notification itself, nothing partial
is listed, and the next run frees the dead run's slot at once, cleans what it left and succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.sandbox.clusters import prefect_database, prefect_server
from sppg_backup.settings import load_settings
from sppg_backup.storage import open_storage
from tests.e2e.client import api, trigger, wait_final
from tests.e2e.conftest import quiet_frequent_schedules, start_worker
from tests.integration.test_limits import _dumps_waiting, _until

pytestmark = pytest.mark.e2e
CRASH_AFTER = 75  # the shortest window: heartbeats every 30 s (Prefect's shortest)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the flow run's process, its pg_dump and compressors), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def state_of(url: str, run_id: Any) -> Any:
    return api(url, lambda client: client.read_flow_run(run_id)).state


def test_a_run_whose_worker_died_is_crashed_told_and_the_next_run_succeeds(
    tmp_path: Path, postgres_cluster: Any, erp_database: str, worker_config: Path, webhook: Any
) -> None:
    config = tmp_path / "worker.toml"  # the worker host's settings; the on-call phone is told critical failures
    config.write_text(
        worker_config.read_text().replace("notify_urls", "notify_critical_urls") + f'scratch_dir = "{tmp_path}/s"\n'
    )
    storage = open_storage(load_settings(config).storage_url)
    storage_folder = Path(storage.folder)
    before = {b.id for b in list_backups(storage).backups}
    (tmp_path / "prefect").mkdir()
    with prefect_server(tmp_path / "prefect", prefect_database(postgres_cluster, "prefect_crash")) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")}
        env |= {"PREFECT_API_URL": url, "SPPG_BACKUP_CONFIG": str(config)}
        cli = str(Path(sys.executable).with_name("sppg-backup"))
        done = subprocess.run(
            [cli, "deployments", "--apply", "--crash-after", str(CRASH_AFTER)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"after {CRASH_AFTER} s without a heartbeat; 1 notification URLs are told" in done.stdout
        quiet_frequent_schedules(url, every_one=True)  # only the test's runs (not the 03:00 WIB one at 20:00 UTC)
        os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = "30"  # the workers' runs: alive every 30 s
        try:
            worker = start_worker(url, config, tmp_path / "worker.log", "unix:///nonexistent")
        finally:
            del os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]
        lock = psycopg.connect(erp_database)  # the backup's pg_dump waits behind it: a run that lasts
        try:
            lock.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            run_id = trigger(url, {}, "backup-database/daily")
            _until(lambda: _dumps_waiting(erp_database), 90, lambda: (tmp_path / "worker.log").read_text()[-3000:])
            time.sleep(CRASH_AFTER + 15)  # longer than the window: a run that sends heartbeats is left alone
            assert state_of(url, run_id).name == "Running"
            # the host dies: the worker, the run's process, its pg_dump, all at once
            doomed = [worker.pid, *descendants(worker.pid)]
            for pid in doomed:
                os.kill(pid, signal.SIGKILL)
            worker.wait()
            killed = time.monotonic()
            crashed = _until(
                lambda: state_of(url, run_id).name == "Crashed", CRASH_AFTER + 30, "the dead run was never Crashed"
            )
            took = time.monotonic() - killed
            assert crashed and took <= CRASH_AFTER + 10, took
            assert "No heartbeat for 75 s" in state_of(url, run_id).message
            told = _until(
                lambda: [m for m in webhook.messages if "CRASHED: backup-database" in m["title"]], 30, "untold"
            )
            assert "no heartbeat for 75 s" in told[0]["message"] and "Nothing it made is listed" in told[0]["message"]
            assert {b.id for b in list_backups(storage).backups} == before  # nothing partial listed
            left = [p.name for p in (storage_folder / "db").iterdir() if ".partial-" in p.name or ".reserved" in p.name]
            assert left  # what the dead run left: its partial upload and its id claim
        finally:
            lock.close()
        # the next run (the scheduler's, or Run in the UI) on a new worker: the dead run's slot is freed at once
        worker = start_worker(url, config, tmp_path / "worker2.log", "unix:///nonexistent")
        try:
            began = time.monotonic()
            again = wait_final(url, trigger(url, {}, "backup-database/daily"), timeout=180)
            took = time.monotonic() - began
        finally:
            worker.terminate()
            worker.wait(60)
        assert again.state.is_completed(), again.state
        assert took < 60  # not the slot's lease (75 s after its last renewal) waited out
        assert not [p for p in (storage_folder / "db").iterdir() if p.name in left]  # cleaned by the next run
        listed = list_backups(storage)
        assert len({b.id for b in listed.backups} - before) == 1 and listed.orphans == []
