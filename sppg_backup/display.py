"""Times and sizes as the ops team reads them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def shown_time(moment: datetime, zone: ZoneInfo) -> str:
    """A time as the ops team reads it, e.g. 2026-11-24 03:00:05 WIB."""
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
