"""Point-in-time recovery's alerts in `status` (check-backup-health) and its metrics: WAL archiving stalled,
the slot holding too much WAL, no base backup; they fire with the receiver stopped and clear once it runs."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sppg_backup.sandbox.clusters import Cluster
from tests.helpers import cli
from tests.integration.test_wal_receiver import base_backup, primary, receiver, wait_connected, wal_env

pytestmark = pytest.mark.integration
__all__ = ["primary", "wal_env"]


PITR = {"wal_archiving_stalled", "wal_slot_missing", "wal_slot_retains_too_much", "base_backup_missing"}


def alerts(api: str) -> dict[str, str]:
    """The point-in-time recovery alerts `status` raises (there is no dump here: that one is always on)."""
    done = cli("status", "--json", api=api)
    assert done.returncode == 1, done.stderr
    found = {a["name"]: a["summary"] for a in json.loads(done.stdout)["alerts"]}
    assert "backup_missing" in found
    return {name: summary for name, summary in found.items() if name in PITR}


def wal_metrics(path: Path) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.labels.get("kind") == "wal":
                found[sample.name] = sample.value
    return found


def test_status_raises_the_pitr_alerts_and_clears_them_once_the_receiver_runs(
    wal_env: dict[str, str], primary: Cluster, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_PITR", "true")
    monkeypatch.setenv("SPPG_BACKUP_WAL_STALL_MINUTES", "0.05")  # 3 s
    before = alerts(prefect_api)
    assert "no WAL reached storage" in before["wal_archiving_stalled"]
    assert "wal stream" in before["wal_slot_missing"] and "base_backup_missing" in before

    running = receiver(prefect_api)
    try:
        wait_connected(wal_env, primary)
        base_backup(prefect_api)
        with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS pulse (at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO pulse DEFAULT VALUES")
        time.sleep(1.5)
        monkeypatch.setenv("SPPG_BACKUP_WAL_STALL_MINUTES", "0.5")  # `status` itself takes seconds on a busy CI
        assert alerts(prefect_api) == {}
        measured = wal_metrics(Path(wal_env["METRICS_FILE"]))
        assert time.time() - measured["backup_wal_last_archived_timestamp"] < 10
        assert measured["backup_wal_archive_lag_seconds"] < 10 and "backup_wal_slot_retained_bytes" in measured
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(30)
    with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:  # WAL nobody receives: the slot holds it
        conn.execute("INSERT INTO pulse SELECT FROM generate_series(1, 1000)")
    time.sleep(3.5)
    monkeypatch.setenv("SPPG_BACKUP_WAL_STALL_MINUTES", "0.05")
    monkeypatch.setenv("SPPG_BACKUP_SLOT_MAX_RETAINED_BYTES", "4096")
    after = alerts(prefect_api)
    assert set(after) == {"wal_archiving_stalled", "wal_slot_retains_too_much"}, after
    assert "the server's disk fills" in after["wal_slot_retains_too_much"]
