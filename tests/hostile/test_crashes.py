"""kill -9 of a restore at its worst moment (services stopped, the decrypted dump on disk, the new database half
restored): the next run starts the services again and removes what was left; `status` says so meanwhile."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db import postgres
from sppg_backup.db.catalog import list_backups
from sppg_backup.storage import open_storage
from tests.dbcheck import table_contents
from tests.helpers import cli, error_lines

pytestmark = pytest.mark.integration


def slow(folder: Path, cluster: Any, tool: str, gate: str = "sleep 60") -> Path:
    """pg_dump and pg_restore that run `gate` first (`tool` only): time to kill the run while it is open."""
    folder.mkdir()
    for name in ("pg_dump", "pg_restore"):
        first = f'[ "$1" = --version ] || {gate}\n' if name == tool else ""
        (folder / name).write_text(f'#!/bin/sh\n{first}exec {cluster.bin_dir / name} "$@"\n')
        (folder / name).chmod(0o755)
    return folder


def wait_for(check: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def states(engine: Any) -> dict[str, str]:
    return {c.name: c.status for c in engine.client.containers.list(all=True)}


def scratch_databases(cluster: Any) -> list[str]:
    with postgres.connect(cluster.url()) as conn:
        rows = conn.execute(r"SELECT datname FROM pg_database WHERE datname ~ '_restoring_|^sppg_'").fetchall()
    return [str(r[0]) for r in rows]


def test_a_restore_killed_mid_way_is_cleaned_up_by_the_next(
    live: dict[str, Any],
    backup_env: dict[str, str],
    postgres_cluster: Any,
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("SPPG_BACKUP_SCRATCH_DIR", str(scratch))
    monkeypatch.setenv("SPPG_BACKUP_PG_BIN_DIR", str(slow(tmp_path / "bin", postgres_cluster, "pg_restore")))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    run = subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "restore", "db", live["backup"]["id"], "--yes", "--no-safety-backup"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    engine = live["engine"]
    try:
        wait_for(lambda: set(states(engine).values()) == {"exited"} and any(scratch.glob("*/*.dump")))
        wait_for(lambda: scratch_databases(postgres_cluster) != [])
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the whole run, pg_restore and all
        run.wait()
    assert set(states(engine).values()) == {"exited"}
    assert any(scratch.glob("*/*.dump")) and scratch_databases(postgres_cluster) != []
    time.sleep(11)  # older than a run that is just starting

    monkeypatch.delenv("SPPG_BACKUP_PG_BIN_DIR")
    told = cli("status", api=prefect_api)
    assert told.returncode == 1
    assert "services_left_stopped" in told.stderr and "erp-sppg-backend-1" in told.stderr, told.stderr
    assert "leftovers" in told.stderr and "_restoring_" in told.stderr and str(scratch) in told.stderr

    done = cli("restore", "db", live["backup"]["id"], "--yes", "--no-safety-backup", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert set(states(engine).values()) == {"running"}
    assert table_contents(live["url"]) == live["good"]
    assert list(scratch.iterdir()) == [] and scratch_databases(postgres_cluster) == []
    told = cli("status", api=prefect_api)
    assert "services_left_stopped" not in told.stderr and "leftovers" not in told.stderr, told.stderr


def test_a_record_of_a_container_removed_since_does_not_stop_the_next_restore(
    live: dict[str, Any], backup_env: dict[str, str], prefect_api: str
) -> None:
    folder = Path(backup_env["STATE_DIR"]) / "stopped-services"
    folder.mkdir(parents=True)
    gone = {"name": "backend-9", "container_id": "0" * 64, "container_name": "erp-gone", "was_running": True}
    record = {"host": socket.gethostname(), "pid": 2**22 + 1, "process_start": "1", "at": "2026-12-01T20:00:00+00:00"}
    (folder / "20261201_200000-dead.json").write_text(json.dumps({**record, "services": [gone]}))
    done = cli("restore", "db", live["backup"]["id"], "--yes", "--no-safety-backup", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert list(folder.iterdir()) == []


def test_a_backup_killed_mid_dump_leaves_nothing_the_next_backup_does_not_clean(
    backup_env: dict[str, str], postgres_cluster: Any, prefect_api: str, tmp_path: Path
) -> None:
    bin_dir = slow(tmp_path / "bin", postgres_cluster, "pg_dump")
    storage = Path(backup_env["STORAGE_URL"].removeprefix("file://"))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SPPG_BACKUP_PG_BIN_DIR": str(bin_dir)}
    run = subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "backup", "db"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: any(storage.rglob("*.partial-*")) and any(storage.rglob("*.reserved")))
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    time.sleep(11)  # older than an upload that is just starting
    told = cli("status", api=prefect_api)
    assert "leftovers" in told.stderr and ".partial-" in told.stderr and ".reserved" in told.stderr, told.stderr

    done = cli("backup", "db", "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert not any(storage.rglob("*.partial-*")) and not any(storage.rglob("*.reserved"))
    listing = list_backups(open_storage(backup_env["STORAGE_URL"]))
    assert len(listing.backups) == 1 and listing.orphans == []


def test_sigterm_mid_dump_is_one_clear_line_and_lists_nothing(
    backup_env: dict[str, str], postgres_cluster: Any, prefect_api: str, tmp_path: Path
) -> None:
    bin_dir = slow(tmp_path / "bin", postgres_cluster, "pg_dump", "exec sleep 60")  # killed with the run
    storage = Path(backup_env["STORAGE_URL"].removeprefix("file://"))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SPPG_BACKUP_PG_BIN_DIR": str(bin_dir)}
    run = subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "backup", "db"], env=env, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: any(storage.rglob("*.partial-*")))
    run.send_signal(signal.SIGTERM)  # systemd stopping the service, or a timeout
    _, stderr = run.communicate(timeout=60)
    lines = error_lines(stderr)
    assert run.returncode != 0 and len(lines) == 1 and "unexpected" not in stderr, stderr
    assert "stopped" in lines[0] and "SIGTERM" in lines[0]
    assert list_backups(open_storage(backup_env["STORAGE_URL"])).backups == []


def flow_run_states(api: str) -> dict[str, tuple[str, str]]:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_flow_runs(limit=200)

    return {str(r.id): (r.state.type.value, r.state.message or "") for r in asyncio.run(read()) if r.state}


def test_a_killed_command_leaves_no_server_and_no_run_running_after_the_next(
    backup_env: dict[str, str], postgres_cluster: Any, prefect_api: str, tmp_path: Path
) -> None:
    bin_dir = slow(tmp_path / "bin", postgres_cluster, "pg_dump", "exec sleep 60")
    storage = Path(backup_env["STORAGE_URL"].removeprefix("file://"))
    before = set(flow_run_states(prefect_api))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SPPG_BACKUP_PG_BIN_DIR": str(bin_dir)}
    run = subprocess.Popen([sys.executable, "-m", "sppg_backup", "backup", "db"], env=env, start_new_session=True)
    try:
        wait_for(lambda: any(storage.rglob("*.partial-*")))
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    [killed] = set(flow_run_states(prefect_api)) - before
    assert flow_run_states(prefect_api)[killed][0] == "RUNNING"  # what the UI shows until the next command
    done = cli("backup", "db", api=prefect_api)
    assert done.returncode == 0, done.stderr
    state, message = flow_run_states(prefect_api)[killed]
    assert state == "CRASHED" and "was killed" in message


def test_the_temporary_server_of_a_killed_command_is_stopped_by_the_next(
    backup_env: dict[str, str], postgres_cluster: Any, tmp_path: Path
) -> None:
    bin_dir = slow(tmp_path / "bin", postgres_cluster, "pg_dump", "exec sleep 60")
    storage = Path(backup_env["STORAGE_URL"].removeprefix("file://"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # its own temporary server
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "SPPG_BACKUP_PG_BIN_DIR": str(bin_dir)})
    run = subprocess.Popen([sys.executable, "-m", "sppg_backup", "backup", "db"], env=env)
    try:
        wait_for(lambda: any(storage.rglob("*.partial-*")), timeout=120)
        [server] = servers_of(run.pid)
    finally:
        run.kill()  # kill -9 of the command alone: its server is left behind
        run.wait()
    wait_for(lambda: parent_of(server) == 1)
    subprocess.run([sys.executable, "-m", "sppg_backup", "list"], env=env, capture_output=True, timeout=120)
    wait_for(lambda: parent_of(server) is None, timeout=30)


def servers_of(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and parent_of(int(p.name)) == pid and b"create_app" in read(p / "cmdline")
    ]


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return None


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
