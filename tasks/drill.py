"""Tasks of the weekly recovery drill (find and download come from tasks.verify)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.db import drill, restore
from sppg_backup.ops import report
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import destinations
from sppg_backup.tasks.reporting import Entry, tell
from sppg_backup.tasks.verify import server_url


@task(name="create-test-database", cache_policy=NO_CACHE, timeout_seconds=300)
def create_test_database(settings: Settings) -> str:
    return restore.create_scratch_database(server_url(settings), "drill")


@task(name="restore-latest-backup", cache_policy=NO_CACHE)
def restore_test_database(settings: Settings, target: str, archive: Path) -> None:
    pg_restore = restore.pg_restore_tool(target, settings.pg_bin_dir)
    restore.restore_archive(target, archive, pg_restore, settings.restore_jobs, check="restore")
    get_run_logger().info("restored into %s", restore.postgres.parse(target)[0].label)


@task(name="smoke-checks", cache_policy=NO_CACHE, timeout_seconds=600)
def run_smoke_checks(settings: Settings, target: str) -> list[drill.SmokeResult]:
    results = drill.run_smoke_checks(target, settings.drill_checks)
    for result in results:
        get_run_logger().info(
            "%s: %s (got %s, expected %s)", result.name, "ok" if result.passed else "FAILED", result.got, result.expect
        )
    return results


@task(name="application-tests", cache_policy=NO_CACHE)
def run_app_tests(settings: Settings, target: str) -> drill.AppTestResult:
    assert settings.drill_test_command is not None
    result = drill.run_app_test(settings.drill_test_command, target, settings.drill_test_timeout_seconds)
    get_run_logger().info("`%s` exited with %s in %.1f s", result.command, result.exit_code, result.seconds)
    return result


@task(name="drop-test-database", cache_policy=NO_CACHE, timeout_seconds=300)
def drop_test_database(target: str) -> None:
    restore.drop_database(target)


@task(name="drill-report", cache_policy=NO_CACHE)
def write_drill_report(settings: Settings, result: drill.DrillReport) -> str:
    """Artifact, JSON record in storage, audit record and notification: the drill's evidence."""
    dest = destinations(settings)
    key = drill.save(dest.storage, result)
    details = {"rto": result.rto_seconds, "rpo": result.rpo_seconds, "failed_step": result.failed_step}
    tell(
        settings,
        "recovery-drill",
        report.drill_report(result, dest.storage.describe(key), settings.zone),
        Entry("drill", result.backup_id or "-", result.status, details),
    )
    return key
