"""The fleet at 03:00: N ERP instances whose backups are all due in the same minute, on a real Prefect server on
PostgreSQL with two workers on different queues.

    .venv/bin/python bench/fleet.py [--sizes 5,20] [--scale 1]

For each N (a fresh server each time): N small generated databases on one PostgreSQL, one settings file per
instance, `deployments --instances` made from prefect.yaml and deployed by the deploy step (pool, prefect deploy,
automations), each instance's `backup-database` (database queue) and `backup-files` (application queue) due in
the same minute. The server's scheduler makes the runs; a worker on each queue runs them, as many at once as
come. Reports: every run completed, none twice, none lost; the time from the scheduled minute to the last
completion; the queueing delay (a worker took the run: Pending) and the start delay (its process began the flow:
Running), both after the scheduled time; the server's memory (idle and peak).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml

from bench.common import tree_rss
from sppg_backup.sandbox.clusters import Cluster, fill_sample, free_port, prefect_database, wait_for
from sppg_backup.stream.crypto import generate_key_file

WIB = ZoneInfo("Asia/Jakarta")
FLOWS = {"backup_database": "database", "backup_files": "application"}  # entrypoint function -> queue
PREFECT = str(Path(sys.executable).with_name("prefect"))


def instance_files(work: Path, erp: Cluster, n: int, scale: int, recipient: str, key: Path) -> Path:
    """N databases, settings files (one storage URL: each instance's folder under it) and the instances file."""
    listed = []
    for number in range(1, n + 1):
        site = f"site-{number:02d}"
        url = erp.create_database("erp_" + site.replace("-", "_"))
        fill_sample(url, scale)
        uploads = work / "uploads" / site
        uploads.mkdir(parents=True)
        for i in range(20):
            (uploads / f"invoice-{i}.pdf").write_bytes(os.urandom(4096))
        config = work / "config" / f"{site}.toml"
        config.parent.mkdir(exist_ok=True)
        config.write_text(
            f'instance = "{site}"\ndatabase_url = "{url}"\nstorage_url = "{(work / "storage").as_uri()}"\n'
            f'local_dir = "{work / "local"}"\nstate_dir = "{work / "state"}"\nuploads_dir = "{uploads}"\n'
            f'age_recipients = ["{recipient}"]\nage_identity_file = "{key}"\nmin_backup_size = 1000\n'
            f"scheduled_flows = []\n"
        )
        listed.append(f'[instances.{site}]\nconfig = "{config}"\n')
    (work / "instances.toml").write_text("\n".join(listed))
    return work / "instances.toml"


def fleet_file(instances: Path, due: datetime) -> str:
    """The instances' deployments of the two benchmarked flows, both due at `due` (a WIB minute)."""
    from sppg_backup.deployments.apply import deployments_file

    text, _ = deployments_file(instances)
    made = yaml.safe_load(text)
    kept = [d for d in made["deployments"] if d["entrypoint"].rsplit(":", 1)[1] in FLOWS]
    for entry in kept:
        entry["schedules"] = [{"cron": f"{due.minute} {due.hour} * * *", "timezone": "Asia/Jakarta"}]
        entry.pop("concurrency_limit", None)  # its CANCEL_NEW would drop nothing here; keep the runs comparable
    return yaml.safe_dump({**made, "deployments": kept}, sort_keys=False)


class Sampler:
    """The peak RSS of a process tree, sampled every half second in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.5)


def read_runs(api: str, due: datetime) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime
    from prefect.settings import PREFECT_API_URL, temporary_settings

    window = FlowRunFilterExpectedStartTime(after_=due - timedelta(seconds=1), before_=due + timedelta(seconds=59))
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(expected_start_time=window), limit=200)


def picked_up(api: str, runs: list[Any]) -> list[float]:
    """Seconds from each run's scheduled time to its worker taking it (its Pending state): the queueing alone,
    before its process starts."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    delays = []
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        for run in runs:
            pending = [s.timestamp for s in client.read_flow_run_states(run.id) if s.name == "Pending"]
            if pending:
                delays.append((min(pending) - run.expected_start_time).total_seconds())
    return sorted(delays)


def one_size(n: int, scale: int, work: Path) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key = work / "key.txt"
    recipient = generate_key_file(key)
    erp, meta = Cluster(work / "erp").start(), Cluster(work / "prefect-db").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        instances = instance_files(work, erp, n, scale, recipient, key)
        print(f"N={n}: {n} databases of scale {scale} in {time.perf_counter() - started:.0f} s", flush=True)
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SPPG_BACKUP_", "PREFECT_"))}
        server_env = base | {
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_database(meta),
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": api,
        }  # as deployments/prefect-server.service runs it: the production scheduler and worker loops
        with open(work / "server.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    env=server_env,
                    stdout=log,
                    stderr=log,
                )
            )
        wait_for(api + "/health", procs[0], work / "server.log", 120)
        sampler = Sampler(procs[0].pid)
        # due in the first whole minute that leaves the deploy step and the scheduler's 60 s loop time to act
        due = (datetime.now(WIB) + timedelta(seconds=150)).replace(second=0, microsecond=0) + timedelta(minutes=1)
        text = fleet_file(instances, due)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from sppg_backup.deployments.apply import apply

        os.environ["PREFECT_API_URL"] = api  # for prefect deploy
        began = time.perf_counter()
        with temporary_settings({PREFECT_API_URL: api}):
            apply(text, 300, [])
        deploy_seconds = time.perf_counter() - began
        print(f"N={n}: deployed {2 * n} deployments in {deploy_seconds:.0f} s; due {due:%H:%M} WIB", flush=True)
        worker_env = base | {"PREFECT_API_URL": api, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"}
        for queue in ("database", "application"):
            with open(work / f"worker-{queue}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [PREFECT, "worker", "start", "--pool", "sppg-backup", "--work-queue", queue],
                        cwd=ROOT,
                        env=worker_env,
                        stdout=log,
                        stderr=log,
                    )
                )
        idle = tree_rss(procs[0].pid)
        deadline = due + timedelta(minutes=30)
        runs: list[Any] = []
        while datetime.now(WIB) < deadline:
            runs = read_runs(api, due)
            if len(runs) >= 2 * n and all(r.state and r.state.is_final() for r in runs):
                break
            time.sleep(5)
        sampler.stop.set()
        return report(n, due, runs, picked_up(api, runs), idle, sampler.peak, deploy_seconds)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(120)
        erp.stop()
        meta.stop()


def report(
    n: int, due: datetime, runs: list[Any], pickups: list[float], idle: int, peak: int, deploy_seconds: float
) -> dict[str, Any]:
    by_deployment: dict[Any, list[Any]] = {}
    for run in runs:
        by_deployment.setdefault(run.deployment_id, []).append(run)
    completed = [r for r in runs if r.state and r.state.is_completed()]
    delays = sorted((r.start_time - r.expected_start_time).total_seconds() for r in completed if r.start_time)
    last_end = max((r.end_time for r in completed if r.end_time), default=None)
    return {
        "instances": n,
        "runs_expected": 2 * n,
        "runs_made": len(runs),
        "completed": len(completed),
        "twice": sum(1 for found in by_deployment.values() if len(found) > 1) + sum(1 for r in runs if r.run_count > 1),
        "lost": 2 * n - len(by_deployment),
        "states": sorted({r.state.name for r in runs if r.state}),
        "due_to_last_completion_seconds": round((last_end - due).total_seconds(), 1) if last_end else None,
        "pickup_delay_median_seconds": round(statistics.median(pickups), 1) if pickups else None,
        "pickup_delay_max_seconds": round(pickups[-1], 1) if pickups else None,
        "start_delay_median_seconds": round(statistics.median(delays), 1) if delays else None,
        "start_delay_max_seconds": round(delays[-1], 1) if delays else None,
        "run_seconds_median": round(
            statistics.median((r.end_time - r.start_time).total_seconds() for r in completed), 1
        )
        if completed
        else None,
        "server_rss_idle_mb": round(idle / 2**20),
        "server_rss_peak_mb": round(peak / 2**20),
        "deploy_seconds": round(deploy_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5,20", help="numbers of instances, one fresh server each")
    parser.add_argument("--scale", type=int, default=1, help="sample database size (1 is about 2 MB)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench" / "fleet")
    args = parser.parse_args()
    results = []
    for n in (int(size) for size in args.sizes.split(",")):
        result = one_size(n, args.scale, args.workdir.resolve() / f"n{n}")
        print(json.dumps(result), flush=True)
        results.append(result)
    print(
        "\n| N | runs completed / made / expected | twice | lost | due -> last done | picked up after (median / max) "
        "| running after (median / max) | run (median) | server RSS idle / peak | deploy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['instances']} | {r['completed']} / {r['runs_made']} / {r['runs_expected']} | {r['twice']} | "
            f"{r['lost']} | {r['due_to_last_completion_seconds']} s | {r['pickup_delay_median_seconds']} / "
            f"{r['pickup_delay_max_seconds']} s | {r['start_delay_median_seconds']} / {r['start_delay_max_seconds']} s "
            f"| {r['run_seconds_median']} s | {r['server_rss_idle_mb']} / {r['server_rss_peak_mb']} MB | "
            f"{r['deploy_seconds']} s |"
        )
    print(f"at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
