"""backup-base: the weekly physical base backup that point-in-time recovery starts from."""

from __future__ import annotations

from typing import Any

from prefect import flow

from sppg_backup.forms import CONFIG_PARAM, ONLY_WITH_PITR, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.backup import summary
from sppg_backup.tasks.base import check_replication, publish_base, report_base, take_base_backup
from sppg_backup.tasks.base_checks import skipped
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time
from sppg_backup.tasks.replicate import replicate_new


@flow(
    name="backup-base", description="pg_basebackup, compress, encrypt, checksum, upload, list.", flow_run_name=run_name
)
def backup_base(
    config_file: Text = CONFIG_PARAM,
    only_with_pitr: bool = ONLY_WITH_PITR,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    if only_with_pitr and not settings.pitr:
        return skipped(settings, "backup-base")
    try:
        # 0. One run at a time on this database and its backups, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE):
            clean_leftovers(settings, uploads=True)
            step(check_replication, settings)
            manifest = step(take_base_backup, settings, timeout_seconds=settings.dump_timeout_seconds)
            listed = step(publish_base, settings, manifest)
            report_base(settings, listed)
    except BaseException as error:
        report_base(settings, None, error)
        raise
    replicate_new(settings, ("wal/", "base/"))  # to the replicas in the other region, its manifest last
    return summary(listed)
