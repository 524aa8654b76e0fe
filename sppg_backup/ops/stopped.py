"""Services a run stopped, written down (durably) before they are stopped. A run killed while they are down
leaves its record; the next restore starts them again, and `status` and the health check say so meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sppg_backup import processes
from sppg_backup.ops.containers import Service

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


def record(state_dir: Path, services: list[Service]) -> Path:
    """Write down what is about to be stopped, fsynced, before the first stop."""
    folder = state_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{datetime.now(UTC):%Y%m%d_%H%M%S}-{uuid.uuid4().hex[:8]}.json"
    entry = {**processes.me(), "at": datetime.now(UTC).isoformat(), "services": [asdict(s) for s in services]}
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
    mine = processes.me()
    with contextlib.suppress(FileNotFoundError):
        for path in (state_dir / FOLDER).glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                entry = json.loads(path.read_text())
                if (
                    all(entry.get(k) == v for k, v in mine.items())
                    and {s["container_id"] for s in entry["services"]} <= ids
                ):
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
            if not processes.gone(entry):
                continue  # its run is still going, or another host's run (only that host can tell)
            found.append(Record(path, services, at, pid))
    return found
