"""Tasks of replicate-backups: each replica brought up to the storage, its lag measured, the pass reported."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.display import human_size
from sppg_backup.errors import BackupError
from sppg_backup.ops import replicas
from sppg_backup.ops.report import Report
from sppg_backup.settings import Settings, mask_url
from sppg_backup.tasks.common import destinations
from sppg_backup.tasks.reporting import Entry, Measures, tell


@task(name="replicate", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def replicate_to(settings: Settings, index: int, verify: bool = False) -> dict[str, Any]:
    """Copy to replica `index` what it lacks (checked by size and sha256, manifests last); with `verify`, its
    copies are read back first and a damaged one copied again. A replica that cannot be read is a result, not
    an exception: the others still go."""
    return _pass(settings, index, verify)


@task(name="copy-to-replicas", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def replicate_new(settings: Settings, prefixes: tuple[str, ...]) -> None:
    """After a backup is listed: it (and anything else missing under its `prefixes`, e.g. "db/") goes to every
    replica now. Never fails the backup it follows: a failure is told as a warning and the next
    replicate-backups run copies it."""
    if not settings.replica_urls:
        return
    try:
        results = [_pass(settings, index, False, prefixes) for index in range(len(settings.replica_urls))]
        _report(settings, results, whole=False)
    except Exception as exc:  # the backup is listed and good; this must not turn it into a failure
        get_run_logger().warning("copying to the replicas failed: %s", exc)


def _pass(settings: Settings, index: int, verify: bool = False, prefixes: tuple[str, ...] = ("",)) -> dict[str, Any]:
    dest = destinations(settings)
    replica = dest.replicas[index]
    try:
        done = replicas.replicate(dest.storage, replica, verify, prefixes)
    except BackupError as exc:
        done = replicas.Replicated(replica.url, failed=[f"{mask_url(replica.url)}: {' '.join(str(exc).split())}"])
        lag = math.inf
    else:
        lag = replicas.lag_seconds(done.behind_since, datetime.now(UTC))
    get_run_logger().info(
        "%s: %d copied, %d repaired (%s), %d failed",
        mask_url(replica.url),
        len(done.copied),
        len(done.repaired),
        human_size(done.bytes_copied),
        len(done.failed),
    )
    return {**asdict(done), "lag_seconds": lag, "ok": done.ok}


@task(name="report-replication", cache_policy=NO_CACHE)
def report_replication(settings: Settings, results: list[dict[str, Any]]) -> None:
    """The lag of each replica as a metric, the pass in the audit trail, a notification when one failed."""
    _report(settings, results)


def _report(settings: Settings, results: list[dict[str, Any]], whole: bool = True) -> None:
    """`whole`: a pass over all of the storage (only such a pass says how far behind a replica is)."""
    for result in results:
        tell(
            settings,
            "replicate-backups",
            None,
            Entry(
                "replicate",
                mask_url(result["replica"]),
                "ok" if result["ok"] else "failed",
                {"copied": len(result["copied"]), "repaired": result["repaired"], "failed": result["failed"]},
            ),
            Measures({"replica": mask_url(result["replica"])}, {"backup_replica_lag_seconds": result["lag_seconds"]})
            if whole
            else None,
        )
    failed = [r for r in results if not r["ok"]]
    rows = "\n".join(
        f"| {mask_url(r['replica'])} | {len(r['copied'])} | {len(r['repaired'])} | {human_size(r['bytes_copied'])} "
        f"| {_lag(r['lag_seconds'])} | {'; '.join(r['failed'][:3]) or 'ok'} |"
        for r in results
    )
    table = f"| replica | copied | repaired | bytes | behind | result |\n|---|---|---|---|---|---|\n{rows}\n"
    if failed:
        told = Report(
            title=f"Replication FAILED for {len(failed)} of {len(results)} replicas",
            ok=False,
            summary="; ".join(f"{mask_url(r['replica'])}: {r['failed'][0]}" for r in failed),
            next_step="fix the cause above; the next replicate-backups run (every 15 minutes) copies what is missing",
            details=table,
            severity="warning",  # the backups are safe in the storage; the replica-behind alert escalates
        )
    else:
        copied = sum(len(r["copied"]) + len(r["repaired"]) for r in results)
        told = Report(
            title="Replication OK",
            ok=True,
            summary=f"{len(results)} replicas hold everything the storage holds ({copied} objects copied now)."
            if whole
            else f"The new backup is on {len(results)} replicas ({copied} objects copied).",
            next_step="nothing",
            details=table,
        )
    tell(settings, "replicate-backups", told, send=bool(failed))


def _lag(seconds: float) -> str:
    if math.isinf(seconds):
        return "unreadable"
    return "nothing" if seconds == 0 else f"{seconds / 3600:.1f} h"
