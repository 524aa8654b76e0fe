"""Tasks of check-backup-health."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup import health, metrics, notify, report, snapshots
from sppg_backup.catalog import list_backups
from sppg_backup.settings import Settings
from tasks.common import destinations


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
    for usage in usages:
        metrics.record(
            {"location": usage.location},
            {"backup_storage_used_ratio": round(usage.ratio, 4)},
            settings.metrics_file,
            settings.pushgateway_url,
        )
    metrics.record(
        {"kind": "db"}, {"backup_health_alerts": len(alerts)}, settings.metrics_file, settings.pushgateway_url
    )
    for alert in alerts:
        get_run_logger().warning("ALERT %s: %s", alert.name, alert.summary)
    return alerts


@task(name="notify-changes", cache_policy=NO_CACHE, timeout_seconds=300)
def announce_changes(settings: Settings, alerts: list[health.Alert]) -> None:
    """One notification when an alert starts and one when it clears, never one per check."""
    storage = destinations(settings).storage
    started, cleared, state = health.transitions(health.load_state(storage), alerts, datetime.now(UTC))
    for alert in started:
        notify.send(settings.notify_urls, *report.alert_started(alert, settings.storage_url), ok=False)
    for name in cleared:
        notify.send(settings.notify_urls, *report.alert_cleared(name), ok=True)
    health.save_state(storage, state)
    if started or cleared:
        get_run_logger().info("alerts started: %s; cleared: %s", [a.name for a in started], cleared)
