"""rekey-backups: the guide's yearly key rotation. Every encrypted object on the storage, the local copies and
every replica re-encrypted to the new recipients with the current key, one at a time; run again after a kill,
it goes on where it stopped. With a new private key given, every object is then read whole with it."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from sppg_backup.errors import CheckFailed, ConfigError
from sppg_backup.forms import CONFIG_PARAM, DRY_RUN_PARAM, Text
from sppg_backup.settings import load_settings
from sppg_backup.tasks.common import run_name
from sppg_backup.tasks.limits import ON_DATABASE, ON_FILES, one_at_a_time
from sppg_backup.tasks.rekey import check_rotation, places, rekey_place, report_rekey, verify_place

RECIPIENTS = Field(None, description="The new age public keys (age1...), comma-separated: the backups' only readers.")
CONFIRM = Field(False, description="Tick to confirm: every encrypted backup is rewritten for the new keys.")
VERIFY = Field(None, description="The new private key file: every rewritten object is then read whole with it.")


@flow(
    name="rekey-backups",
    description="Re-encrypt every backup to new age keys; the old key reads nothing after.",
    flow_run_name=run_name,
)
def rekey_backups(
    recipients: Text = RECIPIENTS,
    dry_run: bool = DRY_RUN_PARAM,
    confirm: bool = CONFIRM,
    verify_identity: Text = VERIFY,
    config_file: Text = CONFIG_PARAM,
) -> dict[str, Any]:
    settings = load_settings(config_file)
    new = [key.strip() for key in (recipients or "").split(",") if key.strip()]
    if not dry_run and not confirm:
        raise ConfigError("rekey rewrites every encrypted backup: confirm it (--yes), or look first with --dry-run")
    results: list[dict[str, Any]] = []
    unreadable: list[str] = []
    try:
        # 0. One run at a time on this database, its backups and the file snapshots, whichever worker runs it.
        with one_at_a_time(settings, ON_DATABASE, ON_FILES):
            # 1. The current key opens the backups; the new keys are new.
            check_rotation(settings, new, verify_identity)
            count = len(places(settings))
            # 2. Each storage re-encrypted, object by object (the storage, the local copies, the replicas).
            results = [rekey_place(settings, index, new, dry_run) for index in range(count)]
            # 3. With the new private key: every object read whole with it.
            if verify_identity and not dry_run:
                unreadable = [line for index in range(count) for line in verify_place(settings, index, verify_identity)]
    except BaseException as error:
        report_rekey(settings, new, results, unreadable, dry_run, error)
        raise
    report_rekey(settings, new, results, unreadable, dry_run)
    failed = [line for result in results for line in result["failed"]] + unreadable
    if failed:
        raise CheckFailed("rekey", f"{len(failed)} objects not rotated: {failed[0]}")
    return {"storages": results, "verified": bool(verify_identity) and not dry_run}
