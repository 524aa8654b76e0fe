"""restore-files and restore-config: get files back from a snapshot, one version of one file or all of them."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.files.restore import FilesRestoreRequest
from sppg_backup.files.snapshots import SnapshotKind
from sppg_backup.forms import CONFIG_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.common import run_name, step
from sppg_backup.tasks.files import report_restore, restore_snapshot
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_FILES, one_at_a_time

DEFAULTS = FilesRestoreRequest()  # a default, not None: the UI's form opens filled in
REQUEST = (
    "Type the folder to restore into, pick the snapshot (or give 'as of'), and Submit. Restore into an empty "
    "folder first to look; files already in the target are kept unless overwrite is ticked."
)


def _restore(kind: SnapshotKind, request: FilesRestoreRequest, config_file: str | None) -> dict[str, Any]:
    settings = load_settings(config_file)
    try:
        # 0. One run at a time on the file snapshots, whichever worker runs it.
        with one_at_a_time(settings, ON_FILES):
            clean_leftovers(settings)
            result = step(restore_snapshot, settings, kind, request)
    except BaseException as error:
        report_restore(settings, kind, request, None, error)
        raise
    report_restore(settings, kind, request, result)
    return result.model_dump(mode="json")


@flow(name="restore-files", description="Restore uploaded files from a snapshot into a folder.", flow_run_name=run_name)
def restore_files(
    request: FilesRestoreRequest = Field(DEFAULTS, description=REQUEST),  # noqa: B008 - Prefect reads Field defaults
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    return _restore("files", request, config_file)


@flow(
    name="restore-config",
    description="Restore the configuration files from a snapshot into a folder.",
    flow_run_name=run_name,
)
def restore_config(
    request: FilesRestoreRequest = Field(DEFAULTS, description=REQUEST),  # noqa: B008
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    return _restore("config", request, config_file)
