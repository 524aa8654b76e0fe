"""recovery-drill: the guide's weekly recovery test, measuring recovery time (RTO) and data age (RPO)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from sppg_backup.db.catalog import Manifest
from sppg_backup.db.drill import AppTestResult, SmokeResult, Stopwatch, build_report
from sppg_backup.errors import BackupError, CheckFailed
from sppg_backup.forms import CONFIG_PARAM, ONLY_WITH_PITR, Text
from sppg_backup.physical import pitr
from sppg_backup.physical.pitr import PitrRequest
from sppg_backup.settings import load_settings
from sppg_backup.tasks.base_checks import newest_recoverable, open_scratch, skipped, stop_scratch
from sppg_backup.tasks.common import run_name, scratch_folder, step
from sppg_backup.tasks.drill import (
    create_test_database,
    drop_test_database,
    restore_test_database,
    run_app_tests,
    run_smoke_checks,
    write_drill_report,
)
from sppg_backup.tasks.leftovers import clean_leftovers
from sppg_backup.tasks.limits import ON_DATABASE, one_at_a_time
from sppg_backup.tasks.pitr import list_wal, recover, unpack_base
from sppg_backup.tasks.verify import fetch_archive, find_backup, server_url


@flow(
    name="recovery-drill",
    description="Restore the newest backup as a disaster would; measure RTO and RPO.",
    flow_run_name=run_name,
)
def recovery_drill(config_file: Text = CONFIG_PARAM) -> dict[str, Any]:
    settings = load_settings(config_file)
    watch = Stopwatch()
    manifest: Manifest | None = None
    target: str | None = None
    smoke: list[SmokeResult] = []
    app: AppTestResult | None = None
    rto: float | None = None
    failure: CheckFailed | None = None
    try:
        # 0. One run at a time on this database and its backups, whichever worker runs it (the wait is not timed).
        with one_at_a_time(settings, ON_DATABASE):
            clean_leftovers(settings, servers=(server_url(settings),))
            watch.restart()
            with watch("find backup"):
                manifest = step(find_backup, settings, None)
            # 1. Create test environment.
            target = create_test_database(settings)
            # 2. Restore latest backup to test environment.
            with scratch_folder(settings) as folder:
                archive = folder / f"{manifest.id}.dump"
                with watch("download"):
                    step(fetch_archive, settings, manifest, archive)
                with watch("restore"):
                    restore_test_database(settings, target, archive)
            with watch("smoke checks"):
                smoke = run_smoke_checks(settings, target)
            rto = watch.elapsed()
            # 3. Run application tests.
            if settings.drill_test_command:
                with watch("application tests"):
                    app = run_app_tests(settings, target)
    except BackupError as error:
        failure = error if isinstance(error, CheckFailed) else CheckFailed("drill", str(error))
    finally:
        # 4. Cleanup test environment.
        if target is not None:
            drop_test_database(target)
    result = build_report(
        watch, manifest.id if manifest else None, manifest.created_at if manifest else None, rto, smoke, app, failure
    )
    write_drill_report(settings, result)
    if result.status == "failed":
        raise CheckFailed(result.failed_step or "drill", f"recovery drill failed: {result.detail}")
    return result.model_dump(mode="json")


@flow(
    name="recovery-drill-pitr",
    description="Recover the newest base backup and all WAL after it; RTO and RPO.",
    flow_run_name=run_name,
)
def recovery_drill_pitr(config_file: Text = CONFIG_PARAM, only_with_pitr: bool = ONLY_WITH_PITR) -> dict[str, Any]:
    """The physical drill: what a disaster now would get back, timed from the start until it passed its checks."""
    settings = load_settings(config_file)
    if only_with_pitr and not settings.pitr:
        return skipped(settings, "recovery-drill-pitr")
    watch = Stopwatch()
    manifest: Manifest | None = None
    newest: datetime | None = None
    smoke: list[SmokeResult] = []
    rto: float | None = None
    failure: CheckFailed | None = None
    try:
        # 0. One run at a time on this database and its backups, whichever worker runs it (the wait is not timed).
        with one_at_a_time(settings, ON_DATABASE):
            clean_leftovers(settings)
            watch.restart()
            with watch("find base backup"):
                manifest, newest = step(newest_recoverable, settings)
            with scratch_folder(settings) as folder:
                open_scratch(settings, folder)
                port = pitr.free_port()
                try:
                    # 1. Restore the newest base backup into a scratch data directory.
                    with watch("download and unpack"):
                        unpack_base(settings, manifest, folder)
                    # 2. The WAL after it, from storage.
                    with watch("list WAL"):
                        plan = step(list_wal, settings, manifest, folder, True)
                    # 3. Recover to the end of the WAL (fetched as it replays) and promote.
                    with watch("recover"):
                        request = PitrRequest(latest=True, target_dir=str(folder))
                        recover(settings, request, manifest, folder, port, plan)
                    with watch("smoke checks"):
                        smoke = run_smoke_checks(settings, pitr.recovered_url(settings.database_url, port))
                    rto = watch.elapsed()
                finally:
                    # 4. Cleanup test environment.
                    stop_scratch(settings, folder)
    except BackupError as error:
        failure = error if isinstance(error, CheckFailed) else CheckFailed("drill", str(error))
    created = manifest.created_at if manifest else None
    result = build_report(watch, manifest.id if manifest else None, created, rto, smoke, None, failure, newest, "pitr")
    write_drill_report(settings, result)
    if result.status == "failed":
        raise CheckFailed(result.failed_step or "drill", f"point-in-time recovery drill failed: {result.detail}")
    return result.model_dump(mode="json")
