"""restore-pitr: the guide's `gcloud sql instances clone ... --point-in-time` for our own servers: a new data
directory brought back to any second the base backups and the WAL archive cover. The running database stays."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.physical import pitr
from sppg_backup.physical.pitr import PitrRequest
from sppg_backup.settings import load_settings
from sppg_backup.tasks.common import step
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.pitr import (
    choose_base,
    discard,
    fetch_wal,
    recover,
    report_pitr,
    smoke_checks,
    summary,
    target_of,
    unpack_base,
)

DEFAULT = PitrRequest()
REQUEST = (
    "Where to bring the database back and to when: a new data directory beside the running server (which is not "
    "touched), a port, and a time in WIB or 'latest'."
)


@flow(name="restore-pitr", description="Base backup, WAL, recovery to a point in time, into a new data directory.")
def restore_pitr(
    request: PitrRequest = Field(DEFAULT, description=REQUEST),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    clean_leftovers(settings)
    began = time.monotonic()
    target, created, manifest_chosen, result = Path("."), False, False, None
    try:
        target = target_of(request)
        port = request.port or pitr.free_port()
        # 1. Choose the newest base backup that ends before the target (refused: a time out of range).
        created = not target.exists()
        manifest = step(choose_base, settings, request, port)
        manifest_chosen = True
        # 2. Restore it into the new data directory.
        unpack_base(settings, manifest, target)
        # 3. The WAL after it, from storage.
        wal = step(fetch_wal, settings, manifest, target)
        # 4. Recover to the point in time, then promote.
        recover(settings, request, manifest, target, port)
        # 5. Check the recovered database.
        smoke_checks(settings, pitr.recovered_url(settings.database_url, port))
        result = summary(settings, request, manifest, target, port, wal, began)
    except BaseException as error:
        if manifest_chosen:
            discard(settings, target, created)
        report_pitr(settings, request, None, error)
        raise
    report_pitr(settings, request, result)
    return result
