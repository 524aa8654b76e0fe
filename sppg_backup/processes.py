"""Whether the process that wrote a record still runs: pid and kernel start time (a reused pid has another)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid`, None when no such process runs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def me() -> dict[str, Any]:
    """Who writes a record: host, pid and its start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "process_start": start_time(os.getpid())}


def gone(record: dict[str, Any]) -> bool | None:
    """True when the writer of `record` (from me()) has ended; None when another host wrote it (only that host
    can tell)."""
    if record.get("host") != socket.gethostname():
        return None
    started = record.get("process_start")
    return started is None or start_time(int(record.get("pid", 0))) != started
