"""Tasks of check-backup-health."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL

from sppg_backup.db.catalog import list_backups
from sppg_backup.display import shown_time
from sppg_backup.errors import BackupError
from sppg_backup.files import snapshots
from sppg_backup.instances import belongs
from sppg_backup.ops import health, notify, replicas, report, schedules, stopped
from sppg_backup.physical import receiver
from sppg_backup.settings import Settings, mask_url
from sppg_backup.tasks.common import destinations, of_instance
from sppg_backup.tasks.leftovers import leftovers
from sppg_backup.tasks.reporting import measure, routes, tell


@task(name="evaluate-health", cache_policy=NO_CACHE, timeout_seconds=600)
def evaluate_health(settings: Settings) -> list[health.Alert]:
    """The guide's alert conditions, from the catalog in storage and the storage's fill level."""
    dest = destinations(settings)
    usages = [u for u in (health.storage_usage(dest.storage, settings.bucket_quota_bytes),) if u is not None]
    if settings.local_dir is not None:
        usages.append(health.disk_usage("local", settings.local_dir))
    limits = health.Thresholds(settings.max_backup_age_hours, settings.size_drop_ratio, settings.storage_alert_ratio)
    regular = [m for m in list_backups(dest.storage).backups if m.purpose == "backup"]
    now = datetime.now(UTC)
    alerts = health.evaluate(regular, now, usages, limits)
    if settings.uploads_dir is not None and settings.uploads_dir.is_dir():  # this host keeps uploads
        files = health.files_alert(snapshots.newest_time(dest.storage, "files"), now)
        alerts += [files] if files else []
    alerts += schedule_alerts(settings, now)
    alerts += [health.stopped_alert(left, settings.zone) for left in stopped.abandoned(settings.state_dir)]
    servers = (settings.database_url, settings.verify_database_url or settings.database_url)
    left = leftovers(settings, uploads=True, servers=servers, remove=False)
    alerts += [health.leftovers_alert(left)] if left else []
    if settings.pitr:
        alerts += wal_alerts(settings, now)
    alerts += replica_alerts(settings, now)
    alerts += key_alerts(settings, regular, now)
    for usage in usages:
        measure(settings, {"location": usage.location}, {"backup_storage_used_ratio": round(usage.ratio, 4)})
    measure(settings, {"kind": "db"}, {"backup_health_alerts": len(alerts)})
    for alert in alerts:
        get_run_logger().warning("ALERT %s: %s", alert.name, alert.summary)
    return alerts


def key_alerts(settings: Settings, backups: list[Any], now: datetime) -> list[health.Alert]:
    """The age of the newest encryption key in use as a metric, and an alert past KEY_MAX_AGE_DAYS."""
    if not settings.age_recipients:
        return []
    since = health.key_in_use_since(backups, settings.age_recipients)
    if since is not None:
        age = {"backup_encryption_key_age_seconds": (now - since).total_seconds()}
        measure(settings, {"kind": "db"}, age)
    alert = health.key_alert(since, now, settings.key_max_age_days)
    return [alert] if alert else []


def replica_alerts(settings: Settings, now: datetime) -> list[health.Alert]:
    """A replica lacking something made more than REPLICA_MAX_LAG_HOURS ago, or unreadable; each one's lag as a
    metric (+Inf: unreadable)."""
    dest = destinations(settings)
    alerts = []
    for number, replica in enumerate(dest.replicas, 1):
        shown, name = mask_url(replica.url), f"replica_behind_{number}"
        try:
            since = replicas.behind_since(dest.storage, replica)
        except BackupError as exc:
            lag = math.inf
            alerts.append(health.Alert(name, f"replica {shown} cannot be read: {' '.join(str(exc).split())}"))
        else:
            lag = replicas.lag_seconds(since, now)
            if since is not None and lag > settings.replica_max_lag_hours * 3600:
                alerts.append(
                    health.Alert(
                        name,
                        f"replica {shown} lacks backups made since {shown_time(since, settings.zone)} "
                        f"({lag / 3600:.1f} h behind, more than {settings.replica_max_lag_hours:g} h)",
                    )
                )
        measure(settings, {"replica": shown}, {"backup_replica_lag_seconds": lag})
    return alerts


def wal_alerts(settings: Settings, now: datetime) -> list[health.Alert]:
    """The WAL archive's and the slot's alerts, and their metrics; a server that cannot be asked is an alert."""
    storage = destinations(settings).storage
    try:
        facts = receiver.status(settings, storage, now.timestamp())
    except BackupError as exc:
        return [health.Alert("wal_slot_unreadable", f"cannot read replication slot {settings.replication_slot}: {exc}")]
    newest = datetime.fromisoformat(facts["newest_upload"]) if facts["newest_upload"] else None
    bases = list_backups(storage, ("base",)).backups
    found = health.WalState(
        newest, facts["slot_exists"], facts["slot_retained_bytes"], bases[-1].finished_at if bases else None
    )
    values = {"backup_wal_archive_lag_seconds": facts["lag_seconds"] if newest else now.timestamp()}
    if newest:
        values["backup_wal_last_archived_timestamp"] = newest.timestamp()
    if facts["slot_retained_bytes"] is not None:
        values["backup_wal_slot_retained_bytes"] = facts["slot_retained_bytes"]
    measure(settings, {"kind": "wal"}, values)
    limits = health.WalLimits(settings.wal_stall_minutes, settings.slot_max_retained_bytes, settings.base_max_age_days)
    return health.pitr_alerts(found, now, limits, settings.replication_slot)


@task(name="report-health-failure", cache_policy=NO_CACHE)
def report_health_failure(settings: Settings, error: BaseException) -> None:
    step = "fix the cause above: until this check runs, no alert about the backups can reach you"
    tell(settings, "check-backup-health", report.run_failed("Backup health check", error, step))


@task(name="notify-changes", cache_policy=NO_CACHE, timeout_seconds=300)
def announce_changes(settings: Settings, alerts: list[health.Alert]) -> None:
    """One notification when an alert starts and one when it clears, never one per check."""
    storage = destinations(settings).storage
    started, cleared, state = health.transitions(health.load_state(storage), alerts, datetime.now(UTC))
    for alert in started:  # a cleared alert is told where it was told when it started
        told = report.alert_started(alert, settings.storage_url)
        notify.send(routes(settings), *told, ok=False, severity=health.severity(alert.name))
    for name in cleared:
        notify.send(routes(settings), *report.alert_cleared(name), ok=True, severity=health.severity(name))
    health.save_state(storage, state)
    tell(settings, "check-backup-health", report.health_report(alerts, settings.storage_url), send=False)
    if started or cleared:
        get_run_logger().info("alerts started: %s; cleared: %s", [a.name for a in started], cleared)


def schedule_alerts(settings: Settings, now: datetime) -> list[health.Alert]:
    """Alerts of SCHEDULED_FLOWS whose schedules went silent; none to check without a Prefect server."""
    server = PREFECT_API_URL.value()
    if not settings.scheduled_flows or not server:
        return []
    found = [read_scheduled_runs(flow, now, settings.instance) for flow in settings.scheduled_flows]
    return schedules.schedule_alerts(found, now, settings.zone, server)


def read_scheduled_runs(flow: str, now: datetime, instance: str | None = None) -> schedules.ScheduledRuns:
    """The flow's deployments (the instance's), its next Scheduled run and its newest scheduled run due by now."""
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])), deployment_filter=of_instance(instance)
        )
        deployments = [d for d in deployments if belongs(d.tags, instance)]
        if not deployments:
            return schedules.ScheduledRuns(flow, 0)
        of_them = DeploymentFilter(id=DeploymentFilterId(any_=[d.id for d in deployments]))
        upcoming = client.read_flow_runs(
            deployment_filter=of_them,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"])),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=now),  # type: ignore[arg-type]
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
        )
        due = client.read_flow_runs(
            deployment_filter=of_them,
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(before_=now)),  # type: ignore[arg-type]
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=20,
        )
    last = next((r for r in due if r.auto_scheduled), None)
    return schedules.ScheduledRuns(
        flow,
        len(deployments),
        next_start=upcoming[0].expected_start_time if upcoming else None,
        last_name=last.name if last else None,
        last_state=last.state.name if last and last.state else None,
        last_start=last.expected_start_time if last else None,
    )
