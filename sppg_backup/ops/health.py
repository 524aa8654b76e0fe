"""Backup health: the guide's four alert conditions, and which alerts started or cleared since the last check."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sppg_backup import keys
from sppg_backup.db.catalog import Manifest
from sppg_backup.display import human_size, shown_time
from sppg_backup.errors import NotFoundError
from sppg_backup.ops.stopped import Record
from sppg_backup.storage import Storage, get_bytes, put_bytes

STATE_KEY = keys.HEALTH_STATE


@dataclass(frozen=True)
class Alert:
    name: str
    summary: str


@dataclass(frozen=True)
class Usage:
    location: str
    where: str
    used: int
    capacity: int

    @property
    def ratio(self) -> float:
        return self.used / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class Thresholds:
    max_age_hours: float = 25
    size_drop_ratio: float = 0.5
    storage_ratio: float = 0.8


def disk_usage(location: str, path: Path) -> Usage:
    while not path.exists() and path != path.parent:
        path = path.parent
    total, used, _ = shutil.disk_usage(path)
    return Usage(location, str(path), used, total)


def storage_usage(storage: Storage, quota: int | None) -> Usage | None:
    """A directory: its disk. A bucket: bytes stored under the prefix against the configured quota (if any)."""
    if storage.folder is not None:
        return disk_usage("storage", storage.folder)
    if quota is None:
        return None
    return Usage("storage", storage.url, sum(obj.size for obj in storage.list("")), quota)


FILES_MAX_AGE = timedelta(hours=1)  # the snapshot runs every 5 minutes


def files_alert(newest: datetime | None, now: datetime) -> Alert | None:
    """Uploads snapshots stopped (or never started) on a host that has an uploads folder."""
    if newest is not None and newest >= now - FILES_MAX_AGE:
        return None
    since = f"the newest is from {newest.isoformat(timespec='minutes')}" if newest else "there is none"
    return Alert("files_snapshot_missing", f"no snapshot of the uploaded files in an hour ({since})")


def evaluate(backups: list[Manifest], now: datetime, usages: list[Usage], limits: Thresholds) -> list[Alert]:
    alerts = []
    newest = backups[-1] if backups else None
    if newest is None or newest.finished_at < now - timedelta(hours=limits.max_age_hours):
        since = f"the newest is {newest.id}" if newest else "there is none"
        alerts.append(Alert("backup_missing", f"no successful backup in {limits.max_age_hours:g} hours ({since})"))
    if len(backups) >= 2 and backups[-1].size < limits.size_drop_ratio * backups[-2].size:
        alerts.append(
            Alert(
                "backup_size_drop",
                f"backup {backups[-1].id} is {human_size(backups[-1].size)}, less "
                f"than {limits.size_drop_ratio:.0%} of the previous {human_size(backups[-2].size)}",
            )
        )
    results = sorted(((m.verification, m.id) for m in backups if m.verification), key=lambda r: r[0].checked_at)
    if results and results[-1][0].status == "failed":
        result, backup_id = results[-1]
        alerts.append(
            Alert(
                "verification_failed", f"verification of {backup_id} failed at check '{result.check}': {result.detail}"
            )
        )
    for usage in usages:
        if usage.ratio > limits.storage_ratio:
            alerts.append(
                Alert(
                    f"storage_full_{usage.location}",
                    f"{usage.where} is {usage.ratio:.0%} full "
                    f"({human_size(usage.used)} of {human_size(usage.capacity)})",
                )
            )
    return alerts


def stopped_alert(left: Record, zone: ZoneInfo) -> Alert:
    return Alert(
        "services_left_stopped",
        f"{left.names} stopped since {shown_time(left.at, zone)} by a run (pid {left.pid}) that ended without "
        "starting them again",
    )


def leftovers_alert(left: list[str]) -> Alert:
    shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
    return Alert("leftovers", f"{len(left)} things left by killed runs: {shown}")


def load_state(storage: Storage) -> dict[str, dict[str, str]]:
    """Active alerts as of the last check: name -> {since, summary}."""
    try:
        return dict(json.loads(get_bytes(storage, STATE_KEY)).get("active", {}))
    except NotFoundError:
        return {}
    except ValueError:
        return {}  # an unreadable state: alerts are announced again rather than lost


def save_state(storage: Storage, state: dict[str, dict[str, str]]) -> None:
    put_bytes(storage, STATE_KEY, json.dumps({"active": state}, indent=2, sort_keys=True).encode())


def transitions(
    previous: dict[str, dict[str, str]], alerts: list[Alert], now: datetime
) -> tuple[list[Alert], list[str], dict[str, dict[str, str]]]:
    """Alerts that started, names of alerts that cleared, and the new state."""
    current = {a.name: a for a in alerts}
    started = [a for a in alerts if a.name not in previous]
    cleared = [name for name in previous if name not in current]
    state = {
        a.name: {"since": previous.get(a.name, {}).get("since", now.isoformat()), "summary": a.summary} for a in alerts
    }
    return started, cleared, state
