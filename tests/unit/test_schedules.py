from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sppg_backup.ops.schedules import ScheduledRuns, schedule_alerts

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
WIB = ZoneInfo("Asia/Jakarta")
SERVER = "http://prefect:4200/api"


def alerts(*found: ScheduledRuns) -> dict[str, str]:
    return {a.name: a.summary for a in schedule_alerts(list(found), NOW, WIB, SERVER)}


def daily(**kwargs: object) -> ScheduledRuns:
    base = {
        "next_start": NOW + timedelta(hours=12),
        "last_name": "brave-owl",
        "last_state": "Completed",
        "last_start": NOW - timedelta(hours=12),
    }
    return ScheduledRuns("backup-database", 1, **{**base, **kwargs})  # type: ignore[arg-type]


def test_a_daily_backup_due_within_25_hours_after_a_completed_run_is_healthy() -> None:
    assert alerts(daily(), daily(next_start=NOW + timedelta(hours=24, minutes=59))) == {}


def test_no_upcoming_run_is_an_alert_naming_the_likely_causes() -> None:
    found = alerts(daily(next_start=None))
    assert list(found) == ["schedule_missing_backup_database"]
    assert "paused" in found["schedule_missing_backup_database"] and SERVER in found["schedule_missing_backup_database"]
    assert list(alerts(daily(next_start=NOW + timedelta(hours=26)))) == ["schedule_missing_backup_database"]


def test_no_deployment_at_all_says_how_to_deploy() -> None:
    found = alerts(ScheduledRuns("verify-backup", 0))
    assert "prefect deploy" in found["schedule_missing_verify_backup"]


def test_a_run_late_for_more_than_five_minutes_or_crashed_is_an_alert() -> None:
    assert alerts(daily(last_state="Late", last_start=NOW - timedelta(minutes=2))) == {}
    late = alerts(daily(last_state="Late", last_start=NOW - timedelta(minutes=30)))
    assert list(late) == ["schedule_late_backup_database"]
    assert (
        "brave-owl" in late["schedule_late_backup_database"] and "14:30:00 WIB" in late["schedule_late_backup_database"]
    )
    assert "worker" in late["schedule_late_backup_database"]
    assert list(alerts(daily(last_state="Crashed"))) == ["schedule_crashed_backup_database"]
