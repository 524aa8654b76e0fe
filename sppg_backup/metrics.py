"""The guide's Prometheus metrics, to a textfile-collector file and optionally a Pushgateway."""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

HELP = {
    "backup_last_success_timestamp": "Unix time of the last successful backup",
    "backup_last_failure_timestamp": "Unix time of the last failed backup",
    "backup_last_run_success": "1 if the last backup run succeeded, 0 if it failed",
    "backup_duration_seconds": "Duration of the last successful backup",
    "backup_file_size_bytes": "Stored size of the last successful backup",
    "backup_verification_status": "1 if the last verification passed, 0 if it failed",
    "backup_last_verification_timestamp": "Unix time of the last verification",
}


def _load(path: Path) -> dict[tuple[str, str], float]:
    """Existing values by (metric, kind), so one run's update keeps the other metrics' last values."""
    values: dict[tuple[str, str], float] = {}
    if path.exists():
        for family in text_string_to_metric_families(path.read_text()):
            for sample in family.samples:
                if sample.name in HELP:
                    values[(sample.name, sample.labels.get("kind", ""))] = sample.value
    return values


def record(kind: str, values: dict[str, float], textfile: Path | None, pushgateway: str | None) -> None:
    """Set metrics for one kind of backup; a failure to publish is logged, never raised."""
    if textfile is None and not pushgateway:
        return
    if textfile is not None:
        try:
            merged = _load(textfile)
            merged.update({(name, kind): value for name, value in values.items()})
            textfile.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(textfile), _registry(merged))
        except (OSError, ValueError) as exc:
            log.warning("cannot write metrics file %s: %s", textfile, exc)
    if pushgateway:
        try:
            registry = _registry({(name, kind): value for name, value in values.items()})
            pushadd_to_gateway(pushgateway, job="sppg_backup", registry=registry, grouping_key={"kind": kind})
        except OSError as exc:
            log.warning("cannot push metrics to %s: %s", pushgateway, exc)


def _registry(values: dict[tuple[str, str], float]) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for (name, kind), value in sorted(values.items()):
        if name not in gauges:
            gauges[name] = Gauge(name, HELP[name], ["kind"], registry=registry)
        gauges[name].labels(kind=kind).set(value)
    return registry
