"""verify-backup: the guide's daily verification, with a real test restore."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.catalog import Manifest
from sppg_backup.errors import BackupError, CheckFailed
from sppg_backup.forms import CONFIG_PARAM, Choice, Text
from sppg_backup.settings import load_settings
from tasks.choices import DATABASE, offer_backups
from tasks.common import retrying, scratch_folder
from tasks.verify import check_stored, fetch_archive, find_backup, list_archive, record_verification, test_restore

BACKUP = "The backup to verify (its id, as in `sppg-backup list`). Leave empty for the newest backup."


@flow(name="verify-backup", description="Prove a backup restores: checksum, decrypt, pg_restore --list, test restore.")
def verify_backup(
    backup_id: Choice = Field(None, description=BACKUP),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    """Verify the named backup, or the newest one when no id is given."""
    settings = load_settings(config_file)
    started = datetime.now(UTC)
    manifest: Manifest | None = None
    try:
        # 1. Check the backup file (and its manifest) exists.
        manifest = retrying(find_backup, settings)(settings, backup_id)
        # 2. Check the backup file size.
        retrying(check_stored, settings)(settings, manifest)
        with scratch_folder(settings) as folder:
            archive = folder / f"{manifest.id}.dump"
            # 3. Verify backup integrity: sha256, decryption, pg_restore --list.
            retrying(fetch_archive, settings)(settings, manifest, archive)
            list_archive(settings, archive)
            # 4. Test restore to a temporary database, then compare every table's row count.
            test_restore(settings, manifest, archive)
    except BackupError as error:
        failure = error if isinstance(error, CheckFailed) else CheckFailed("verification", str(error))
        record_verification(settings, manifest, failure, started)
        offer_backups(settings, DATABASE)
        raise failure from None
    result = record_verification(settings, manifest, None, started)
    offer_backups(settings, DATABASE)
    return result
