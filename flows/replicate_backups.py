"""replicate-backups: the guide's scenario 3 made possible: every backup of every kind copied to the replicas in
another region (REPLICA_URLS), so the DR region lists, verifies and restores from its replica alone."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.errors import CheckFailed
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.common import run_name
from sppg_backup.tasks.replicate import replicate_to, report_replication

VERIFY = Field(False, description="Read every copy on the replicas back and copy a damaged one again (slow).")


@flow(
    name="replicate-backups",
    description="Copy what the replicas lack, checked; manifests last; never deletes.",
    flow_run_name=run_name,
)
def replicate_backups(verify: bool = VERIFY, config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    if not settings.replica_urls:
        return {"replicas": [], "skipped": "no REPLICA_URLS set"}
    # 1. Each replica: copy what it lacks or holds different (contents, then manifests).
    results = [replicate_to(settings, index, verify) for index in range(len(settings.replica_urls))]
    # 2. Lag metrics, audit, report; a failed replica fails the run.
    report_replication(settings, results)
    failed = [line for result in results for line in result["failed"]]
    if failed:
        raise CheckFailed("replicate", f"{len(failed)} objects not replicated: {failed[0]}")
    return {"replicas": results}
