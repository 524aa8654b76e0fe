"""What a `sppg-backup` command killed with kill -9 leaves in Prefect: the temporary server it started (a child
process that outlives it) and its flow run, shown as Running forever. The next command ends both."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from sppg_backup import processes

PREFIX = "sppg-backup-cli:"  # a tag on every flow run a command runs: which process runs it
log = logging.getLogger("sppg_backup.cli")


def tag() -> str:
    me = processes.me()
    return f"{PREFIX}{me['host']}:{me['pid']}:{me['process_start']}"


def _ended(run_tag: str) -> bool:
    host, pid, start = run_tag.removeprefix(PREFIX).rsplit(":", 2)
    return bool(processes.gone({"host": host, "pid": int(pid), "process_start": start}))


OWNER = "SPPG_CLI_OWNER"  # set by every command: the temporary server it starts inherits it


def stop_orphaned_servers() -> list[int]:
    """Prefect's temporary servers whose command died: stopped; their pids. Only those a command started (its
    tag is in their environment) and whose command is gone; never a server started on purpose."""
    os.environ[OWNER] = tag()
    stopped = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(os.getpid()):
            continue
        with contextlib.suppress(OSError, ValueError):
            if b"prefect.server.api.server:create_app" not in (proc / "cmdline").read_bytes():
                continue
            environ = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
            owner = environ.get(OWNER.encode(), b"").decode()
            if environ.get(b"PREFECT__SERVER_EPHEMERAL") != b"1" or not owner.startswith(PREFIX):
                continue
            if _ended(owner):
                os.kill(int(proc.name), signal.SIGTERM)
                stopped.append(int(proc.name))
    return stopped


def crash_runs_of_killed_commands() -> list[str]:
    """Flow runs a killed command left Running: marked Crashed (the UI, retries and the schedule guard then see
    them for what they are); their names."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    crashed = []
    running = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])))
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=running, limit=200):
            tags = [t for t in run.tags if t.startswith(PREFIX)]
            if tags and _ended(tags[0]):
                message = "the sppg-backup command running it was killed; run it again"
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                crashed.append(run.name)
    return crashed


def guarded(step: Any) -> Any:
    """Cleaning up after an earlier command never stops this one."""
    try:
        return step()
    except Exception as exc:
        log.debug("could not clean up after an earlier command: %s", exc)
        return None
