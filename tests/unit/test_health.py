from datetime import UTC, datetime, timedelta

from sppg_backup.db.catalog import Verification
from sppg_backup.ops.health import Thresholds, Usage, evaluate, transitions
from tests.unit.test_retention import NOW, manifest


def names(alerts: list) -> list[str]:  # type: ignore[type-arg]
    return [a.name for a in alerts]


def sized(days_old: float, size: int, verified: bool | None = None):  # type: ignore[no-untyped-def]
    m = manifest(days_old, verified)
    return m.model_copy(update={"size": size, "finished_at": m.created_at})


def test_healthy_when_recent_same_size_verified_and_room_left() -> None:
    backups = [sized(1, 1000, True), sized(0.5, 990, True)]
    assert evaluate(backups, NOW, [Usage("local", "/backups", 10, 100)], Thresholds()) == []


def test_no_backup_at_all_or_older_than_25_hours() -> None:
    assert names(evaluate([], NOW, [], Thresholds())) == ["backup_missing"]
    assert names(evaluate([sized(26 / 24, 1000)], NOW, [], Thresholds())) == ["backup_missing"]
    assert evaluate([sized(24 / 24, 1000)], NOW, [], Thresholds()) == []


def test_size_drop_below_half_of_the_previous() -> None:
    assert names(evaluate([sized(1, 1000), sized(0.1, 499)], NOW, [], Thresholds())) == ["backup_size_drop"]
    assert evaluate([sized(1, 1000), sized(0.1, 500)], NOW, [], Thresholds()) == []


def test_verification_failure_is_judged_on_the_latest_verification() -> None:
    failed_then_passed = [sized(2, 1000, False), sized(0.1, 1000, True)]
    assert evaluate(failed_then_passed, NOW, [], Thresholds()) == []
    latest_failed = [sized(2, 1000, True), sized(0.1, 1000)]
    latest_failed[1] = latest_failed[1].model_copy(
        update={"verification": Verification(status="failed", checked_at=NOW, check="sha256", detail="corrupt")}
    )
    [alert] = evaluate(latest_failed, NOW, [], Thresholds())
    assert alert.name == "verification_failed" and "sha256" in alert.summary


def test_storage_over_80_percent() -> None:
    usages = [Usage("local", "/backups", 81, 100), Usage("storage", "gs://b/p", 79, 100)]
    assert names(evaluate([sized(0.1, 1)], NOW, usages, Thresholds())) == ["storage_full_local"]


def test_transitions_announce_start_and_clear_once() -> None:
    alerts = evaluate([], NOW, [], Thresholds())
    started, cleared, state = transitions({}, alerts, NOW)
    assert names(started) == ["backup_missing"] and cleared == []
    later = NOW + timedelta(minutes=15)
    started, cleared, state2 = transitions(state, alerts, later)
    assert started == [] and cleared == [] and state2["backup_missing"]["since"] == NOW.isoformat()
    started, cleared, state3 = transitions(state2, [], later)
    assert started == [] and cleared == ["backup_missing"] and state3 == {}
    assert datetime.fromisoformat(state["backup_missing"]["since"]).tzinfo == UTC


def test_uploads_snapshots_older_than_an_hour_or_none_alert() -> None:
    from sppg_backup.ops.health import files_alert

    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    assert files_alert(now - timedelta(minutes=5), now) is None
    stale = files_alert(now - timedelta(minutes=70), now)
    assert stale is not None and stale.name == "files_snapshot_missing" and "2026-11-24T01:50" in stale.summary
    missing = files_alert(None, now)
    assert missing is not None and "there is none" in missing.summary


def test_the_newest_key_in_use_counts_from_its_first_backup() -> None:
    from sppg_backup.ops.health import key_alert, key_in_use_since

    old_key, new_key = "age1old", "age1new"
    backups = [
        sized(500, 1000).model_copy(update={"recipients": [old_key]}),
        sized(400, 1000).model_copy(update={"recipients": [old_key, new_key]}),  # the new key added
        sized(1, 1000).model_copy(update={"recipients": [new_key]}),
    ]
    since = key_in_use_since(backups, [old_key, new_key])
    assert since == backups[1].created_at  # the newer of the two, from its first backup
    assert key_alert(since, NOW, 365) is not None and key_alert(since, NOW, 401) is None
    assert key_in_use_since(backups, ["age1never"]) is None and key_alert(None, NOW, 365) is None
