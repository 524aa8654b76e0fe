"""The one reporter: audit record, metrics, the run's artifact and the notification, in that order. Each part is
guarded: reporting never hides the outcome it reports, and a part that failed is said in the report instead of
being claimed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from prefect.artifacts import create_markdown_artifact

from sppg_backup.ops import metrics, notify
from sppg_backup.ops.report import Report
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import audit_trail, destinations

log = logging.getLogger("sppg_backup.report")


@dataclass(frozen=True)
class Entry:
    """One audit record: who is added by the trail. `to_storage`: copied to storage too (not when reporting a
    failure the storage may be the cause of: the local record is enough and says it once)."""

    action: str
    subject: str
    status: str
    details: dict[str, Any] = field(default_factory=dict)
    to_storage: bool = True


@dataclass(frozen=True)
class Measures:
    """Metrics to set, all with the same labels (e.g. kind=db)."""

    labels: dict[str, str]
    values: dict[str, float]


def routes(settings: Settings) -> notify.Routes:
    return notify.Routes(
        settings.notify_urls, settings.notify_warning_urls, settings.notify_critical_urls, settings.instance
    )


def measure(settings: Settings, labels: dict[str, str], values: dict[str, float]) -> None:
    """Set metrics (with the instance's label, when one of several); never raises."""
    labels = metrics.with_instance(labels, settings.instance)
    metrics.record(labels, values, settings.metrics_file, settings.pushgateway_url)


def tell(
    settings: Settings,
    key: str,
    told: Report | None,
    entry: Entry | None = None,
    measures: Measures | None = None,
    send: bool = True,
    problems: list[str] | None = None,
) -> None:
    """Audit `entry`, set `measures`, then `told` as the artifact under `key` (its history in the UI) and, with
    `send`, the notification; `problems` are what the caller could not do. None of it raises."""
    problems = list(problems or [])
    if entry is not None:
        try:
            trail = audit_trail(settings, destinations(settings) if entry.to_storage else None)
            trail.record(entry.action, entry.subject, entry.status, **entry.details)
        except Exception as exc:
            log.warning("cannot write the audit trail: %s", exc)
            problems.append(f"the audit record was not written ({exc})")
    if measures is not None:
        measure(settings, measures.labels, measures.values)
    if told is None:
        return
    if problems:
        severity = told.severity or ("warning" if told.ok else None)
        told = replace(told, summary=told.summary + "\nWarning: " + "; ".join(problems), severity=severity)
    try:
        create_markdown_artifact(key=key, markdown=told.markdown(), description=told.title)
    except Exception as exc:
        log.warning("could not create the %s artifact: %s", key, exc)
    if send and not notify.send(routes(settings), told.title, told.text(), told.ok, told.severity):
        log.warning("the notification %r did not reach every channel", told.title)
