"""verify-base-backup: the daily verification's physical half: a base backup restored and started for real."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.db.catalog import Manifest
from sppg_backup.errors import CheckFailed
from sppg_backup.forms import CONFIG_PARAM, ONLY_WITH_PITR, Text
from sppg_backup.physical import pitr
from sppg_backup.settings import load_settings
from sppg_backup.tasks.base_checks import find_base, open_scratch, skipped, start_scratch, stop_scratch, verify_files
from sppg_backup.tasks.common import run_name, scratch_folder, step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time
from sppg_backup.tasks.pitr import smoke_checks, unpack_base
from sppg_backup.tasks.verify import check_stored, record_verification, report_verify_error

BACKUP = "The base backup to verify (its id, as in `sppg-backup list --kind base`). Leave empty for the newest."


@flow(
    name="verify-base-backup",
    description="Prove a base backup starts: sha256, pg_verifybackup, start, checks.",
    flow_run_name=run_name,
)
def verify_base_backup(
    backup_id: Text = Field(None, description=BACKUP),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
    only_with_pitr: bool = ONLY_WITH_PITR,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    if only_with_pitr and not settings.pitr:
        return skipped(settings, "verify-base-backup")
    started = datetime.now(UTC)
    manifest: Manifest | None = None
    try:
        # 0. One run at a time on this database and its backups, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE):
            clean_leftovers(settings)
            # 1. Check the base backup (and its manifest) exists, with its recorded size.
            manifest = step(find_base, settings, backup_id)
            step(check_stored, settings, manifest)
            with scratch_folder(settings) as folder:
                open_scratch(settings, folder)
                # 2. Download (sha256 checked), decrypt, decompress and unpack into a scratch data directory.
                unpack_base(settings, manifest, folder)
                # 3. Check every file against pg_basebackup's manifest.
                verify_files(settings, manifest, folder)
                # 4. Start it and run the smoke checks; it is stopped and removed whatever happens.
                port = pitr.free_port()
                try:
                    start_scratch(settings, manifest, folder, port)
                    smoke_checks(settings, pitr.recovered_url(settings.database_url, port))
                finally:
                    stop_scratch(settings, folder)
    except BaseException as error:
        if isinstance(error, CheckFailed):
            record_verification(settings, manifest, error, started)
        else:
            report_verify_error(settings, manifest, error)
        raise
    return record_verification(settings, manifest, None, started)
