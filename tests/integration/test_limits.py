"""Never two runs on one database at once: the Prefect global concurrency limits the flows take, on a real
`prefect server` (process, leases in files), real PostgreSQL and real `sppg-backup` commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.storage import open_storage
from tests.conftest import Webhook
from tests.e2e.client import api, task_runs

pytestmark = pytest.mark.integration


def _command(prefect_server: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", *args],
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _runs(url: str, flow: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    return api(  # type: ignore[no-any-return]
        url,
        lambda client: client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])), sort=FlowRunSort.START_TIME_ASC
        ),
    )


def _log(url: str, run_id: Any) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    found = api(url, lambda client: client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))))
    return "\n".join(entry.message for entry in found)


def _until(what: Callable[[], Any], seconds: float, said: str | Callable[[], str]) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(said if isinstance(said, str) else said())


def _dumps_waiting(url: str) -> int:
    """pg_dump connections queued behind the test's table lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def table_locked(erp_database: str) -> Any:
    """An open transaction holding an exclusive lock on `users`: a backup's pg_dump waits behind it."""
    conn = psycopg.connect(erp_database)
    conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    yield conn
    conn.close()


def test_two_backups_started_at_once_on_one_database_run_one_after_the_other(
    backup_env: dict[str, str], prefect_server: str, erp_database: str, table_locked: Any
) -> None:
    started = time.time()
    commands = [_command(prefect_server, "backup", "db", "--json") for _ in range(2)]
    try:
        # one of them dumps (and waits behind the table lock); the other waits for the first to finish
        def both() -> list[Any]:
            found = [r for r in _runs(prefect_server, "backup-database") if r.created.timestamp() >= started - 1]
            return found if len(found) == 2 else []

        runs = _until(both, 60, "the two commands did not both start a flow run")
        waiting = _until(
            lambda: [r for r in runs if "waiting: backups" in _log(prefect_server, r.id)],
            60,
            lambda: "neither run said it waits for the other: " + " / ".join(_log(prefect_server, r.id) for r in runs),
        )
        assert len(waiting) == 1
        holder = next(r for r in runs if r.id != waiting[0].id)
        assert _until(lambda: _dumps_waiting(erp_database), 30, "the first run's pg_dump never started") == 1
        time.sleep(3)
        assert _dumps_waiting(erp_database) == 1  # still only one: the second run has not started its dump
        told = _log(prefect_server, waiting[0].id)
        assert f"and database erp_sppg@127.0.0.1:{erp_database.rsplit(':', 1)[1].split('/')[0]} are held by" in told
        assert f"backup-database run '{holder.name}' (Running, since" in told  # which run it waits for
        table_locked.rollback()
        outputs = [command.communicate(timeout=300) for command in commands]
    finally:
        for command in commands:
            if command.poll() is None:
                os.killpg(command.pid, signal.SIGKILL)
    assert [command.returncode for command in commands] == [0, 0], [err for _, err in outputs]
    assert len(list_backups(open_storage(backup_env["STORAGE_URL"])).backups) == 2
    first_done = max(
        t.end_time for t in task_runs(prefect_server, holder.id) if t.name.startswith("verify-and-publish")
    )
    second_dump = min(t.start_time for t in task_runs(prefect_server, waiting[0].id) if t.name.startswith("dump-"))
    assert second_dump >= first_done  # never interleaved


def test_the_next_run_frees_the_slot_a_killed_run_left_at_once(
    backup_env: dict[str, str], prefect_server: str, erp_database: str, table_locked: Any
) -> None:
    t0 = time.time()
    killed = _command(prefect_server, "backup", "db")
    try:
        _until(lambda: _dumps_waiting(erp_database), 60, "the backup's pg_dump never started")
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # the command and its pg_dump, as a dead host would
        killed.wait()
    table_locked.rollback()
    began, now = time.monotonic(), time.time()
    again = _command(prefect_server, "backup", "db", "--json")
    out, err = again.communicate(timeout=300)
    took = time.monotonic() - began
    assert again.returncode == 0, err
    assert took < 40  # the killed run's lease (60 s after its last renewal) was not waited out
    mine = [r for r in _runs(prefect_server, "backup-database") if r.created.timestamp() >= t0]
    (dead,), (newest,) = ([r for r in mine if (r.created.timestamp() > now) == after] for after in (False, True))
    assert dead.state.name == "Crashed"  # the killed command's run, as the next command found it
    told = _log(prefect_server, newest.id)
    assert "held by backup-database run" in told.split("released database ", 1)[-1], told
    listed = list_backups(open_storage(backup_env["STORAGE_URL"]))
    assert len(listed.backups) == 1 and listed.orphans == []  # the killed run's partial backup is not listed


def test_a_run_that_waited_too_long_fails_with_the_holder_named_and_a_notification(
    backup_env: dict[str, str], prefect_api: str, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    from sppg_backup.errors import Busy
    from sppg_backup.flows.prune_file_snapshots import prune_file_snapshots
    from sppg_backup.settings import load_settings
    from sppg_backup.tasks.limits import ON_FILES, one_at_a_time

    holding, done = threading.Event(), threading.Event()

    @flow(name="holds-the-files")
    def hold() -> None:
        with one_at_a_time(load_settings(None), ON_FILES):
            holding.set()
            done.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30)
        monkeypatch.setenv("SPPG_BACKUP_WAIT_FOR_OTHER_RUN_MINUTES", "0.05")
        with pytest.raises(Busy, match=r"waited 0.05 min and files file:.* is held by holds-the-files run '[a-z-]+'"):
            prune_file_snapshots()
        assert any("waited 0.05 min" in str(m) for m in webhook.messages)  # the failure was told

        from sppg_backup.flows import backup_files as module

        monkeypatch.setattr(module, "scheduled", lambda: True)  # as the scheduler made it
        state = module.backup_files(return_state=True)
        assert state.name == "Skipped" and state.is_completed()
        assert "held by holds-the-files run" in (state.message or "")
    finally:
        done.set()
        holder.join(30)
    # with the holder gone, the same run goes straight in
    assert prune_file_snapshots()["deleted_snapshots"] == []
