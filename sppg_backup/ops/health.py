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


# Alerts that can wait for working hours (the same as in deployments/prometheus/alerts.yml); every other one
# means backups are not being made, not restorable or the application is down: critical, paged.
WARNINGS = (
    "backup_size_drop",
    "storage_full_",
    "base_backup_missing",
    "leftovers",
    "replica_behind_",
    "encryption_key_old",
)


def severity(name: str) -> str:
    return "warning" if name.startswith(WARNINGS) else "critical"


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


def key_in_use_since(backups: list[Manifest], recipients: list[str]) -> datetime | None:
    """Since when the newest of `recipients` is in use: the first backup encrypted to it (None: none yet). Read
    from the catalog, so the backup host needs no private key to know it."""
    firsts = [min((m.created_at for m in backups if r in m.recipients), default=None) for r in recipients]
    return max((first for first in firsts if first is not None), default=None)


def key_alert(since: datetime | None, now: datetime, max_age_days: float) -> Alert | None:
    """The guide: rotate the encryption key yearly."""
    if since is None or now - since <= timedelta(days=max_age_days):
        return None
    days = (now - since).days
    return Alert(
        "encryption_key_old",
        f"the newest encryption key has been in use since {since.date().isoformat()} ({days} days, more than "
        f"{max_age_days:g}; the guide rotates it yearly)",
    )


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


@dataclass(frozen=True)
class WalState:
    """The WAL archive and the slot as the check found them (receiver.status)."""

    newest_upload: datetime | None
    slot_exists: bool
    slot_retained_bytes: int | None
    newest_base: datetime | None


@dataclass(frozen=True)
class WalLimits:
    stall_minutes: float = 5
    slot_max_bytes: int = 10 * 2**30
    base_max_age_days: float = 8


def pitr_alerts(found: WalState, now: datetime, limits: WalLimits, slot: str) -> list[Alert]:
    """Point-in-time recovery in danger: WAL stopped reaching storage (the RPO grows), the slot holds WAL on
    the server (a dead receiver fills the database's disk), no fresh base backup (recovery replays ever more)."""
    alerts = []
    stalled = timedelta(minutes=limits.stall_minutes)
    if found.newest_upload is None or found.newest_upload < now - stalled:
        since = (
            f"the newest upload is from {found.newest_upload.isoformat(timespec='seconds')}"
            if found.newest_upload
            else "none ever"
        )
        alerts.append(
            Alert(
                "wal_archiving_stalled",
                f"no WAL reached storage in {limits.stall_minutes:g} minutes ({since}): is `sppg-backup wal stream` "
                "running? (`sppg-backup wal status`, its log)",
            )
        )
    if not found.slot_exists:
        alerts.append(
            Alert(
                "wal_slot_missing",
                f"replication slot {slot} is not on the server: start `sppg-backup wal stream`, which creates it",
            )
        )
    elif found.slot_retained_bytes is not None and found.slot_retained_bytes > limits.slot_max_bytes:
        alerts.append(
            Alert(
                "wal_slot_retains_too_much",
                f"replication slot {slot} holds {human_size(found.slot_retained_bytes)} of WAL on the database server "
                f"(limit {human_size(limits.slot_max_bytes)}): the receiver is behind or dead and the server's disk "
                f"fills; start it, or drop the slot (SELECT pg_drop_replication_slot('{slot}')) and take a base backup",
            )
        )
    if found.newest_base is None or found.newest_base < now - timedelta(days=limits.base_max_age_days):
        since = f"the newest is from {found.newest_base.date()}" if found.newest_base else "there is none"
        alerts.append(
            Alert(
                "base_backup_missing",
                f"no base backup in {limits.base_max_age_days:g} days ({since}): run `sppg-backup backup base`",
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
