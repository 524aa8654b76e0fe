"""Services a run stopped, written down (durably) before they are stopped. A run killed while they are down
leaves its record; the next restore starts them again, and `status` and the health check say so meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from .docker_services import Service

FOLDER = "stopped-services"


@dataclass(frozen=True)
class Record:
    path: Path
    services: list[Service]
    at: datetime
    pid: int

    @property
    def names(self) -> str:
        return ", ".join(s.container_name for s in self.services if s.was_running)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (a reused pid has another), None when no such process runs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def record(state_dir: Path, services: list[Service]) -> Path:
    """Write down what is about to be stopped, fsynced, before the first stop."""
    folder = state_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{datetime.now(UTC):%Y%m%d_%H%M%S}-{uuid.uuid4().hex[:8]}.json"
    entry = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "at": datetime.now(UTC).isoformat(),
        "services": [asdict(s) for s in services],
    }
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as out:
        json.dump(entry, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return path


def clear(path: Path) -> None:
    """The services are running again (or were never stopped)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def clear_mine(state_dir: Path, services: list[Service]) -> None:
    """This process started `services` again: its records of them are done."""
    ids = {s.container_id for s in services}
    mine = _process_start(os.getpid())
    with contextlib.suppress(FileNotFoundError):
        for path in (state_dir / FOLDER).glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                entry = json.loads(path.read_text())
                if (entry["pid"], entry["process_start"]) == (os.getpid(), mine) and {
                    s["container_id"] for s in entry["services"]
                } <= ids:
                    clear(path)


def abandoned(state_dir: Path) -> list[Record]:
    """Records of runs on this host that are gone: their services may still be stopped."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in sorted((state_dir / FOLDER).glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                services = [Service(**s) for s in entry["services"]]
                at, pid = datetime.fromisoformat(entry["at"]), int(entry["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # half-written by a run killed while writing: it stopped nothing yet
            if entry.get("host") != socket.gethostname():
                continue  # another host's run: only that host can tell whether it lives
            if entry.get("process_start") is not None and _process_start(pid) == entry["process_start"]:
                continue  # its run is still going
            found.append(Record(path, services, at, pid))
    return found
