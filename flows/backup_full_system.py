"""backup-full-system: the guide's full system backup as one set: database, application, images, config."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow

from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.backup import dump_database, publish_backup
from sppg_backup.tasks.base import check_replication, publish_base, report_base, take_base_backup
from sppg_backup.tasks.choices import FULL, offer_backups
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.files import take_snapshot
from sppg_backup.tasks.full import (
    backup_application,
    backup_image,
    check_sources,
    discard_set,
    publish_set,
    report_full,
    reserve_set,
)
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, ON_FILES, one_at_a_time
from sppg_backup.tasks.replicate import replicate_new


@flow(
    name="backup-full-system",
    description="Database, application files, Docker images and config as one set.",
    flow_run_name=run_name,
)
def backup_full_system(config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    started = datetime.now(UTC)
    set_id = None
    try:
        # 0. One run at a time on this database, its backups and the file snapshots, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE, ON_FILES):
            clean_leftovers(settings, uploads=True)
            step(check_sources, settings)
            set_id = step(reserve_set, settings)
            # 1. Database backup.
            dumped = step(dump_database, settings, timeout_seconds=settings.dump_timeout_seconds)
            database = step(publish_backup, settings, dumped)
            # 1b. With point-in-time recovery: a base backup too, so the set restores to any second after it.
            base = None
            if settings.pitr:
                step(check_replication, settings)
                taken = step(take_base_backup, settings, timeout_seconds=settings.dump_timeout_seconds)
                base = step(publish_base, settings, taken)
                report_base(settings, base, send=False)  # its metrics and audit; the set's report is the message
            # 2. Application files.
            parts = [step(backup_application, settings, set_id)]
            # 3. Docker images.
            parts += [step(backup_image, settings, set_id, ref) for ref in settings.docker_images]
            # The configuration, as its own snapshot (restorable alone with `restore config`).
            config = step(take_snapshot, settings, "config", part_of=set_id)
            # 4. Upload to cloud storage: every part is already there; the manifest makes the set.
            full = step(publish_set, settings, set_id, started, database, parts, config, base)
    except BaseException as error:
        left = discard_set(settings, set_id) if set_id else ""
        report_full(
            settings,
            "backup.full",
            set_id or "-",
            error,
            f"Nothing was listed; earlier full backups are unchanged. {left}",
        )
        raise
    report_full(settings, "backup.full", set_id, None, f"{len(full.parts)} parts stored.")
    # 5. Copy the set to the replicas in the other region (REPLICA_URLS).
    replicate_new(settings, ("db/", "wal/", "base/", "config/", "full/"))
    offer_backups(settings, FULL)
    return full.model_dump(mode="json")
