"""The WAL receiver as a real process on a real replication slot: what was committed reaches storage within the
upload interval, SIGTERM ends it cleanly, kill -9 under write load and a restart lose no transaction."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sppg_backup.physical import wal
from sppg_backup.sandbox.clusters import Cluster
from sppg_backup.storage.local import LocalStorage
from tests.helpers import cli, unpack_base

pytestmark = pytest.mark.integration
INTERVAL = 1


@pytest.fixture(scope="module")
def primary() -> Iterator[Cluster]:
    cluster = Cluster().start()
    cluster.create_database("erp_sppg")
    yield cluster
    cluster.stop()


@pytest.fixture
def wal_env(
    backup_env: dict[str, str], primary: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    settings = {
        "DATABASE_URL": primary.url("erp_sppg"),
        "WAL_DIR": str(tmp_path / "spool"),
        "WAL_UPLOAD_INTERVAL_SECONDS": str(INTERVAL),
        "REPLICATION_SLOT": f"test_{os.getpid()}_{time.monotonic_ns() % 10**6}",
    }
    for name, value in settings.items():
        monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    return {**backup_env, **settings}


def receiver(api: str) -> subprocess.Popen[str]:
    """`sppg-backup -v wal stream`; what it says goes to receiver.log beside its spool (a pipe nobody reads
    would stop it once full)."""
    env = {**os.environ, "PREFECT_API_URL": api}
    log = open(Path(env["SPPG_BACKUP_WAL_DIR"]).parent / "receiver.log", "a")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "-v", "wal", "stream"], env=env, stderr=log, text=True
    )


def wait_connected(env: dict[str, str], primary: Cluster) -> None:
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        for _ in range(100):
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [env["REPLICATION_SLOT"]]
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.1)
    raise AssertionError("the receiver did not connect")


def restore_to_the_end(env: dict[str, str], base_id: str, password: str) -> Cluster:
    """A fresh host: the base backup, then every WAL file in storage (the segment being written as far as it
    was uploaded), replayed to its end; the server promoted."""
    storage = LocalStorage(Path(env["STORAGE_URL"].removeprefix("file://")))
    manifest = json.loads((storage.folder / "base" / f"{base_id}.manifest.json").read_text())  # type: ignore[operator]
    base = Path(tempfile.mkdtemp(prefix="sppg-latest-"))
    unpack_base(storage.folder / manifest["data_key"], Path(env["AGE_IDENTITY_FILE"]), base, password)  # type: ignore[operator]
    fetched = base / "wal"
    fetched.mkdir()
    names = {a.name for a in wal.archived(storage)} | {p.name for p in wal.partials(storage)}
    for name in sorted(names):
        done = subprocess.run(
            [sys.executable, "-m", "sppg_backup", "wal", "fetch", name, str(fetched / name)], capture_output=True
        )
        assert done.returncode == 0, done.stderr
    with open(base / "data" / "postgresql.auto.conf", "a") as conf:
        conf.write(f"restore_command = 'cp {fetched}/%f %p'\n")
    (base / "data" / "recovery.signal").touch()
    if os.geteuid() == 0:
        for path in [fetched, *fetched.iterdir(), base / "data" / "recovery.signal"]:
            shutil.chown(path, "postgres", "postgres")
    restored = Cluster(base).start()
    with psycopg.connect(restored.url(), autocommit=True) as conn:
        for _ in range(200):
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                return restored
            time.sleep(0.1)
    raise AssertionError("the restored server did not finish its recovery")


def diagnosis(env: dict[str, str], restored: Cluster) -> str:
    """What storage held and what the restored server said, for a failure that is a race."""
    stored = sorted(os.listdir(Path(env["STORAGE_URL"].removeprefix("file://")) / "wal"))
    fetched = sorted(os.listdir(restored.base / "wal"))
    said = (Path(env["WAL_DIR"]).parent / "receiver.log").read_text()[-2000:]
    return (
        f"storage: {stored}; fetched: {fetched}; receiver: {said}; log: {(restored.base / 'log').read_text()[-3000:]}"
    )


def base_backup(api: str) -> str:
    done = cli("backup", "base", "--json", api=api)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def test_a_commit_reaches_storage_within_the_interval_and_sigterm_ends_cleanly(
    wal_env: dict[str, str], primary: Cluster, prefect_api: str
) -> None:
    with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY)")
    running = receiver(prefect_api)
    try:
        wait_connected(wal_env, primary)
        base_id = base_backup(prefect_api)
        with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
            conn.execute("INSERT INTO orders VALUES (42)")
        time.sleep(3 * INTERVAL)  # more than 2 x WAL_UPLOAD_INTERVAL_SECONDS ago; the receiver still runs
        restored = restore_to_the_end(wal_env, base_id, primary.password)
        try:
            with psycopg.connect(restored.url("erp_sppg")) as conn:
                rows = conn.execute("SELECT id FROM orders").fetchall()
            assert rows == [(42,)], diagnosis(wal_env, restored)
        finally:
            restored.stop()
        status = json.loads(cli("wal", "status", "--json", api=prefect_api).stdout)
        assert status["receiver_connected"] and status["lag_seconds"] is not None and status["lag_seconds"] < 10
    finally:
        running.send_signal(signal.SIGTERM)
        code = running.wait(30)
    assert code == 0
    assert not (Path(wal_env["WAL_DIR"]) / "receiver.pid").exists()


def test_kill_9_under_write_load_and_a_restart_lose_no_transaction(
    wal_env: dict[str, str], primary: Cluster, prefect_api: str
) -> None:
    with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ledger")
        conn.execute("CREATE TABLE ledger (id serial PRIMARY KEY, payload text)")
    running = receiver(prefect_api)
    wait_connected(wal_env, primary)
    base_id = base_backup(prefect_api)
    committed = {"n": 0}
    writing = threading.Event()
    writing.set()

    def write() -> None:
        with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
            while writing.is_set():
                conn.execute("INSERT INTO ledger (payload) VALUES (repeat('x', 2000))")
                committed["n"] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(2)
        running.kill()  # kill -9: no upload, no goodbye; its pg_receivewal dies with it
        running.wait(10)
        time.sleep(1)
        running = receiver(prefect_api)
        wait_connected(wal_env, primary)
        time.sleep(2)
    finally:
        writing.clear()
        writer.join()
    time.sleep(3 * INTERVAL)
    running.send_signal(signal.SIGTERM)
    assert running.wait(30) == 0
    restored = restore_to_the_end(wal_env, base_id, primary.password)
    try:
        with psycopg.connect(restored.url("erp_sppg")) as conn:
            found: Any = conn.execute("SELECT count(*), max(id) FROM ledger").fetchone()
        assert committed["n"] > 100 and tuple(found) == (committed["n"], committed["n"]), diagnosis(wal_env, restored)
    finally:
        restored.stop()
