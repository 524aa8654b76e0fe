"""The guide's Prometheus metrics, to a textfile-collector file and optionally a Pushgateway."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from sppg_backup.settings import mask_url

log = logging.getLogger(__name__)

HELP = {
    "backup_last_success_timestamp": "Unix time of the last successful backup",
    "backup_last_failure_timestamp": "Unix time of the last failed backup",
    "backup_last_run_success": "1 if the last backup run succeeded, 0 if it failed",
    "backup_duration_seconds": "Duration of the last successful backup",
    "backup_file_size_bytes": "Stored size of the last successful backup",
    "backup_verification_status": "1 if the last verification passed, 0 if it failed",
    "backup_last_verification_timestamp": "Unix time of the last verification",
    "backup_previous_file_size_bytes": "Stored size of the backup before the last one",
    "backup_storage_used_ratio": "Used fraction of the backup storage (location=local disk or storage)",
    "backup_health_alerts": "Number of active backup health alerts",
    "backup_wal_last_archived_timestamp": "Unix time the newest WAL reached storage",
    "backup_wal_archive_lag_seconds": "Seconds since the newest WAL reached storage, at the last check",
    "backup_wal_slot_retained_bytes": "Bytes of WAL the replication slot holds on the database server",
    "backup_encryption_key_age_seconds": "Seconds the newest key in AGE_RECIPIENTS is in use (since its first backup)",
    "backup_replica_lag_seconds": "Age of the oldest object the replica lacks (0: it has everything; +Inf: unreadable)",
}


Labels = tuple[tuple[str, str], ...]
INSTANCE_LABEL = "erp_instance"  # not `instance`: Prometheus gives that label to every scraped target


def with_instance(labels: dict[str, str], instance: str | None) -> dict[str, str]:
    """The labels of one of several ERP instances' metrics: their series stay apart in one file or Pushgateway."""
    return {**labels, INSTANCE_LABEL: instance} if instance else labels


def _load(path: Path) -> dict[tuple[str, Labels], float]:
    """Existing values by (metric, labels), so one run's update keeps the other metrics' last values."""
    values: dict[tuple[str, Labels], float] = {}
    if path.exists():
        for family in text_string_to_metric_families(path.read_text()):
            for sample in family.samples:
                if sample.name in HELP:  # an empty label is no label (see _registry)
                    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if v != ""))
                    values[(sample.name, labels)] = sample.value
    return values


def record(labels: dict[str, str], values: dict[str, float], textfile: Path | None, pushgateway: str | None) -> None:
    """Set metrics (all with the same labels, e.g. kind=db); a failure to publish is logged, never raised."""
    if textfile is None and not pushgateway:
        return
    key = tuple(sorted(labels.items()))
    update = {(name, key): value for name, value in values.items()}
    if textfile is not None:
        try:
            textfile.parent.mkdir(parents=True, exist_ok=True)
            with open(textfile.with_name(textfile.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # the receiver and the flows write it at the same time
                merged = _load(textfile)
                merged.update(update)
                write_to_textfile(str(textfile), _registry(merged))
        except (OSError, ValueError) as exc:
            log.warning("cannot write metrics file %s: %s", textfile, exc)
    if pushgateway:
        try:
            pushadd_to_gateway(pushgateway, job="sppg_backup", registry=_registry(update), grouping_key=labels)
        except OSError as exc:
            shown = mask_url(pushgateway)
            log.warning("cannot push metrics to %s: %s", shown, str(exc).replace(pushgateway, shown))


def _registry(values: dict[tuple[str, Labels], float]) -> CollectorRegistry:
    """One gauge per metric with the label names of all its series (an instance's `erp_instance` beside a series
    written without it): a missing label is empty, which Prometheus reads as no label at all."""
    names: dict[str, set[str]] = {}
    for name, labels in values:
        names.setdefault(name, set()).update(k for k, _ in labels)
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, HELP[name], sorted(found), registry=registry) for name, found in names.items()}
    for (name, labels), value in sorted(values.items()):
        given = dict(labels)
        gauges[name].labels(**{k: given.get(k, "") for k in sorted(names[name])}).set(value)
    return registry
