import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sppg_backup.db.catalog import list_backups, new_backup_id
from sppg_backup.display import shown_time
from sppg_backup.ops import audit, metrics, notify
from sppg_backup.storage import put_bytes
from sppg_backup.storage.local import LocalStorage
from tests.unit.test_retention import manifest


def test_backup_id_is_utc_and_shown_in_wib() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    moment = datetime(2026, 11, 24, 3, 0, 5, tzinfo=ZoneInfo("Asia/Jakarta"))
    assert new_backup_id(moment) == "erp_sppg_backup_20261123_200005"
    assert shown_time(moment, ZoneInfo("Asia/Jakarta")) == "2026-11-24 03:00:05 WIB"


def test_listing_reports_unreadable_manifests_apart(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    good = manifest(1)
    put_bytes(storage, f"db/{good.id}.manifest.json", good.model_dump_json().encode())
    put_bytes(storage, "db/erp_sppg_backup_20200101_000000.manifest.json", b"{not json")
    put_bytes(storage, "db/erp_sppg_backup_20200101_000000.dump.zst.age", b"data")
    put_bytes(storage, "db/erp_sppg_backup_20210101_000000.dump.zst.age", b"orphan")
    listing = list_backups(storage)
    assert [m.id for m in listing.backups] == [good.id]
    assert [key for key, _ in listing.unreadable] == ["db/erp_sppg_backup_20200101_000000.manifest.json"]
    assert listing.orphans == ["db/erp_sppg_backup_20210101_000000.dump.zst.age"]


def read_metrics(path: Path) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels["kind"]): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_metrics_update_keeps_the_other_values(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    metrics.record({"kind": "db"}, {"backup_last_success_timestamp": 100.0, "backup_file_size_bytes": 5.0}, path, None)
    metrics.record({"kind": "db"}, {"backup_last_failure_timestamp": 200.0, "backup_last_run_success": 0.0}, path, None)
    values = read_metrics(path)
    assert values[("backup_last_success_timestamp", "db")] == 100.0
    assert values[("backup_last_failure_timestamp", "db")] == 200.0
    assert values[("backup_file_size_bytes", "db")] == 5.0


def test_unreachable_pushgateway_is_logged_not_raised(tmp_path: Path) -> None:
    from tests.helpers import free_port

    metrics.record({"kind": "db"}, {"backup_last_run_success": 1.0}, None, f"http://127.0.0.1:{free_port()}")


def test_failing_notification_returns_false_and_never_raises() -> None:
    from tests.helpers import free_port

    assert notify.send(notify.Routes([f"json://127.0.0.1:{free_port()}/x"]), "t", "b", ok=False) is False
    assert notify.send(notify.Routes(["not a url at all"]), "t", "b", ok=True) is False
    assert notify.send(notify.Routes(), "t", "b", ok=True) is True


def test_audit_trail_appends_json_lines(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "s")
    trail = audit.AuditTrail(tmp_path / "audit.jsonl", storage, {"user": "ops"})
    trail.record("backup", "id1", "ok", size=1)
    trail.record("prune.delete", "id0", "started")
    records = audit.read(tmp_path / "audit.jsonl")
    assert [(r["action"], r["target"], r["result"]) for r in records] == [
        ("backup", "id1", "ok"),
        ("prune.delete", "id0", "started"),
    ]
    copies = sorted(storage.list("audit/"), key=lambda o: o.key)
    assert [json.loads(storage.path(o.key).read_text())["target"] for o in copies] == ["id1", "id0"]
