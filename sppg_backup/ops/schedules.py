"""A silent scheduler is a failure, not a quiet night: each flow that must run on schedule has an upcoming run,
and its last scheduled run did not stay Late or Crash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sppg_backup.display import shown_time
from sppg_backup.ops.health import Alert

HORIZON = timedelta(hours=25)  # the daily runs: one must be due within a day and an hour
LATE_GRACE = timedelta(minutes=5)  # a worker busy for a moment is not yet a missed backup


@dataclass(frozen=True)
class ScheduledRuns:
    """What the Prefect server knows of one flow's scheduled runs."""

    flow: str
    deployments: int
    next_start: datetime | None = None  # the earliest upcoming Scheduled run
    last_name: str | None = None  # the newest scheduled run due by now
    last_state: str | None = None
    last_start: datetime | None = None


def alert_name(kind: str, flow: str) -> str:
    return f"schedule_{kind}_{flow.replace('-', '_')}"


def schedule_alerts(found: list[ScheduledRuns], now: datetime, zone: ZoneInfo, server: str) -> list[Alert]:
    alerts = []
    for runs in found:
        if runs.deployments == 0:
            alerts.append(
                Alert(
                    alert_name("missing", runs.flow),
                    f"no deployment of {runs.flow} on the Prefect server {server}: nothing will run it; "
                    "deploy it (prefect deploy --all) or serve it (sppg-backup serve)",
                )
            )
        elif runs.next_start is None or runs.next_start > now + HORIZON:
            alerts.append(
                Alert(
                    alert_name("missing", runs.flow),
                    f"{runs.flow} has no scheduled run in the next 25 hours: its deployment is paused, its "
                    f"schedule inactive, or the scheduler of the Prefect server {server} is failing (read its log)",
                )
            )
        late = runs.last_state == "Late" and runs.last_start is not None and runs.last_start < now - LATE_GRACE
        if late or runs.last_state == "Crashed":
            due = shown_time(runs.last_start, zone) if runs.last_start else "-"
            cause = "no worker picked it up" if late else "its worker or process died"
            alerts.append(
                Alert(
                    alert_name(runs.last_state.lower() if runs.last_state else "late", runs.flow),
                    f"the last scheduled run of {runs.flow} ({runs.last_name}, due {due}) is {runs.last_state}: "
                    f"{cause}; start a worker on the pool (prefect worker start --pool sppg-backup) and run it again",
                )
            )
    return alerts
