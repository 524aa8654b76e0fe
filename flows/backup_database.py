"""backup-database: the guide's daily 03:00 WIB database backup."""

from __future__ import annotations

from typing import Any

from prefect import flow

from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.backup import (
    check_database,
    dump_database,
    prune_backups,
    publish_backup,
    report_failure,
    report_success,
    summary,
)
from sppg_backup.tasks.choices import DATABASE, offer_backups
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time
from sppg_backup.tasks.replicate import replicate_new


@flow(
    name="backup-database",
    description="Dump, compress, encrypt, checksum, upload, prune, notify.",
    flow_run_name=run_name,
)
def backup_database(config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    listed = None
    try:
        # 0. One run at a time on this database and its backups, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE):
            clean_leftovers(settings, uploads=True)
            step(check_database, settings)
            # 1-2, 4. Create the dump, compress, encrypt and upload it: one streamed pass.
            manifest = step(dump_database, settings, timeout_seconds=settings.dump_timeout_seconds)
            # 3. Verify backup integrity (size and sha256 of every copy), then list it.
            listed = step(publish_backup, settings, manifest)
            # 5. Clean old backups (>30 days local, >365 days cloud).
            pruned = step(prune_backups, settings)
            # 6. Send notification (success).
            report_success(settings, listed, pruned)
            offer_backups(settings, DATABASE)
    except BaseException as error:
        # 6. Send notification (failure).
        report_failure(settings, error, listed)
        raise
    # 7. Copy it to the replicas in the other region (REPLICA_URLS).
    replicate_new(settings, ("db/",))
    return summary(listed)
