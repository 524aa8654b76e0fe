"""`sppg-backup serve` registers every deployment with its schedule on a real Prefect server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from sppg_backup.sandbox.clusters import Cluster
from tests.integration.test_wal_receiver import primary, wait_connected, wal_env

pytestmark = pytest.mark.integration
__all__ = ["primary", "wal_env"]


def read_deployments() -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_deployments()
            flows = {f.id: f.name for f in await client.read_flows()}
            return {f"{flows[d.flow_id]}/{d.name}": d for d in found}

    return asyncio.run(read())


def test_serve_registers_every_deployment_with_its_jakarta_schedule(
    prefect_api: str, backup_env: dict[str, str]
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        expected = {
            "backup-database/daily",
            "verify-backup/daily",
            "recovery-drill/weekly",
            "check-backup-health/every-15-minutes",
            "prune-backups/manual",
        }
        while not expected <= set(found := read_deployments()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not register its deployments"
            time.sleep(0.5)
        [schedule] = found["backup-database/daily"].schedules
        assert schedule.schedule.cron == "0 3 * * *" and schedule.schedule.timezone == "Asia/Jakarta"
        assert found["recovery-drill/weekly"].schedules[0].schedule.cron == "0 5 * * 0"
    finally:
        proc.terminate()
        proc.wait(30)


def slot_active(cluster: Cluster, slot: str) -> bool:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
    return bool(row and row[0])


def test_serve_runs_the_wal_receiver_beside_the_deployments_when_pitr_is_set(
    prefect_api: str, wal_env: dict[str, str], primary: Cluster
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SPPG_BACKUP_PITR": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_connected(wal_env, primary)  # the receiver streams from the slot
        assert wait_for_deployments()
    finally:
        proc.terminate()
        proc.wait(60)
    for _ in range(100):
        if not slot_active(primary, wal_env["REPLICATION_SLOT"]):
            break
        time.sleep(0.1)
    assert not slot_active(primary, wal_env["REPLICATION_SLOT"])  # stopped with serve: nothing left holding it


def wait_for_deployments() -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "restore-pitr/on-demand" in read_deployments():
            return True
        time.sleep(0.5)
    return False
