"""verify-backup: the guide's daily verification, with a real test restore."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.db.catalog import Manifest
from sppg_backup.errors import CheckFailed
from sppg_backup.forms import CONFIG_PARAM, Choice, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.choices import DATABASE, offer_backups
from sppg_backup.tasks.common import run_name, scratch_folder, step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time
from sppg_backup.tasks.verify import (
    check_stored,
    fetch_archive,
    find_backup,
    list_archive,
    record_verification,
    report_verify_error,
    server_url,
    test_restore,
)

BACKUP = "The backup to verify (its id, as in `sppg-backup list`). Leave empty for the newest backup."


@flow(
    name="verify-backup",
    description="Prove a backup restores: checksum, decrypt, pg_restore --list, test restore.",
    flow_run_name=run_name,
)
def verify_backup(
    backup_id: Choice = Field(None, description=BACKUP),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    """Verify the named backup, or the newest one when no id is given."""
    settings = load_settings(config_file)
    started = datetime.now(UTC)
    manifest: Manifest | None = None
    try:
        # 0. One run at a time on this database and its backups, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE):
            clean_leftovers(settings, servers=(server_url(settings),))
            # 1. Check the backup file (and its manifest) exists.
            manifest = step(find_backup, settings, backup_id)
            # 2. Check the backup file size.
            step(check_stored, settings, manifest)
            with scratch_folder(settings) as folder:
                archive = folder / f"{manifest.id}.dump"
                # 3. Verify backup integrity: sha256, decryption, pg_restore --list.
                step(fetch_archive, settings, manifest, archive)
                list_archive(settings, archive)
                # 4. Test restore to a temporary database, then compare every table's row count.
                test_restore(settings, manifest, archive)
    except BaseException as error:
        if isinstance(error, CheckFailed):
            record_verification(settings, manifest, error, started)  # a verdict: the backup failed a check
        else:
            report_verify_error(settings, manifest, error)  # the run failed; the backup was not judged
        offer_backups(settings, DATABASE)
        raise
    result = record_verification(settings, manifest, None, started)
    offer_backups(settings, DATABASE)
    return result
