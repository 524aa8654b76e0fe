"""`restore pitr`: a new server beside the running one, brought back to the second before a mistake, or to the
newest WAL in storage, from the base backup and the archive alone; a time out of range is one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sppg_backup.physical import pitr
from sppg_backup.sandbox.clusters import Cluster, default_bin_dir
from tests.helpers import cli, error_lines, moment_between
from tests.integration.test_wal_receiver import INTERVAL, base_backup, primary, receiver, wait_connected, wal_env

pytestmark = pytest.mark.integration
__all__ = ["primary", "wal_env"]  # fixtures shared with the receiver's tests
CHECKS = json.dumps([{"name": "invoices readable", "sql": "SELECT count(*) >= 0 FROM invoices", "expect": "true"}])


@pytest.fixture
def history(
    wal_env: dict[str, str], primary: Cluster, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """A day in miniature: a base backup, an invoice, the second after it, the DELETE that was the mistake;
    the receiver running throughout."""
    monkeypatch.setenv("SPPG_BACKUP_DRILL_CHECKS", CHECKS)
    with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS invoices")
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, note text)")
    running = receiver(prefect_api)
    try:
        wait_connected(wal_env, primary)
        base_id = base_backup(prefect_api)
        with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
            before = moment_between(conn, "INSERT INTO invoices VALUES (1, 'kept')", "DELETE FROM invoices")
        time.sleep(3 * INTERVAL)
        yield {"base_id": base_id, "before": before}
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(30)


def rows_of(result: dict[str, Any], password: str) -> list[Any]:
    url = result["url"].replace("postgresql://postgres@", f"postgresql://postgres:{password}@")
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, note FROM invoices ORDER BY id").fetchall()


def stop(result: dict[str, Any]) -> None:
    """The recovered server stopped and its folder removed (the test's own cleaning)."""
    data = Path(result["data_dir"])
    pitr.stop(data, default_bin_dir())
    shutil.rmtree(data.parent, ignore_errors=True)


def test_restore_pitr_brings_back_the_second_before_the_mistake_and_the_latest_state(
    history: dict[str, Any], primary: Cluster, prefect_api: str, tmp_path: Path
) -> None:
    to = history["before"].isoformat()
    done = cli(
        "restore",
        "pitr",
        "--to",
        to,
        "--target-dir",
        tempfile.mkdtemp(prefix="sppg-pitr-to-"),
        "--json",
        api=prefect_api,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    try:
        assert result["base_backup_id"] == history["base_id"] and result["wal_files"] >= 1
        assert rows_of(result, primary.password) == [(1, "kept")]
        assert "postgres:" not in result["url"]  # no password in what is printed
    finally:
        stop(result)
    done = cli(
        "restore",
        "pitr",
        "--latest",
        "--target-dir",
        tempfile.mkdtemp(prefix="sppg-pitr-latest-"),
        "--json",
        api=prefect_api,
    )
    assert done.returncode == 0, done.stderr
    latest = json.loads(done.stdout)
    try:
        assert rows_of(latest, primary.password) == []  # the DELETE, committed more than 2 intervals ago, is there
    finally:
        stop(latest)
    with psycopg.connect(primary.url("erp_sppg")) as conn:  # the running database was not touched
        assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (0,)


def test_a_time_out_of_range_names_the_recoverable_window_and_creates_nothing(
    history: dict[str, Any], prefect_api: str, tmp_path: Path
) -> None:
    target = Path(tempfile.gettempdir()) / f"sppg-never-{os.getpid()}"  # the postgres user passes through /tmp
    done = cli("restore", "pitr", "--to", "2020-01-01 00:00", "--target-dir", str(target), api=prefect_api)
    assert done.returncode == 1
    [line] = error_lines(done.stderr)
    assert "cannot be recovered" in line and "the earliest recoverable time is" in line and "WIB" in line
    assert not target.exists()
    taken = cli("restore", "pitr", "--latest", "--target-dir", str(tmp_path), api=prefect_api)  # not empty
    assert taken.returncode == 2 and "is not empty" in error_lines(taken.stderr)[0]
    if os.geteuid() == 0:  # pytest's folder is closed to others: said before anything is downloaded
        closed = cli("restore", "pitr", "--latest", "--target-dir", str(tmp_path / "new"), api=prefect_api)
        assert closed.returncode == 2 and "is closed to the postgres user" in error_lines(closed.stderr)[0]
        assert not (tmp_path / "new").exists()
