from datetime import UTC, datetime, timedelta
from pathlib import Path

from sppg_backup import keys
from sppg_backup.db.catalog import Manifest, Physical, Source, Verification
from sppg_backup.db.retention import RetentionPolicy, plan
from sppg_backup.ops.audit import AuditTrail, read
from sppg_backup.physical import wal
from sppg_backup.physical.retention import prune_wal
from sppg_backup.storage import put_bytes
from sppg_backup.storage.local import LocalStorage

NOW = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


def manifest(days_old: float, verified: bool | None = None) -> Manifest:
    created = NOW - timedelta(days=days_old)
    return Manifest(
        id=f"erp_sppg_backup_{created:%Y%m%d_%H%M%S}",
        created_at=created,
        finished_at=created,
        duration_seconds=1,
        source=Source(host="h", port=5432, database="d", user="u"),
        server_version="15",
        pg_dump_version="15",
        compression="zstd",
        encryption="none",
        recipients=[],
        data_key="db/x",
        size=1,
        sha256="0" * 64,
        tables={},
        verification=None
        if verified is None
        else Verification(status="passed" if verified else "failed", checked_at=created),
    )


def ids(items: list[Manifest]) -> list[float]:
    return [round((NOW - m.created_at).total_seconds() / 86400) for m in items]


def test_deletes_only_backups_older_than_the_policy() -> None:
    result = plan([manifest(d) for d in (400, 100, 31, 29, 1)], NOW, RetentionPolicy(30))
    assert ids(result.delete) == [400, 100, 31]
    assert ids(result.keep) == [29, 1]


def test_never_deletes_the_newest_backup_even_when_old() -> None:
    result = plan([manifest(d) for d in (90, 60, 45)], NOW, RetentionPolicy(30))
    assert ids(result.keep) == [45]
    assert result.reasons[result.keep[0].id] == "newest backup"


def test_keeps_newest_verified_backup_when_newer_ones_are_unverified() -> None:
    backups = [manifest(90, verified=True), manifest(60, verified=False), manifest(45), manifest(40)]
    result = plan(backups, NOW, RetentionPolicy(30))
    assert ids(result.keep) == [90, 40]
    assert result.reasons[backups[0].id] == "newest verified backup"


def test_boundary_exactly_at_the_cutoff_is_kept() -> None:
    result = plan([manifest(30), manifest(1)], NOW, RetentionPolicy(30))
    assert result.delete == []


def test_empty_catalog_plans_nothing() -> None:
    result = plan([], NOW, RetentionPolicy(30))
    assert result.keep == [] and result.delete == []


def _base(start_wal: str) -> Manifest:
    physical = Physical(
        system_identifier="1", timeline=int(start_wal[:8], 16), start_lsn="0/0", end_lsn="0/0", start_wal=start_wal
    )
    return manifest(0).model_copy(update={"kind": "base", "physical": physical})


def test_wal_goes_back_to_the_oldest_kept_base_across_timelines_and_keeps_histories(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    names = [
        "000000010000000000000003",  # before the oldest kept base: goes
        "000000010000000000000005",
        "000000020000000000000004",  # timeline 2, before it: goes
        "000000020000000000000007",
        "00000002.history",  # always stays
        "000000010000000000000003.00000028.backup",
    ]
    for name in names:
        put_bytes(storage, keys.wal_object(name, "a" * 64, True), b"x")
    put_bytes(storage, keys.wal_partial("000000010000000000000002", True), b"x")
    trail = AuditTrail(tmp_path / "audit.jsonl")
    assert prune_wal(storage, [], trail).deleted == []  # no base backup kept: nothing known to be needless
    dry = prune_wal(storage, [_base("000000020000000000000007"), _base("000000010000000000000005")], trail, True)
    assert dry.deleted == [
        "000000010000000000000002",
        "000000010000000000000003",
        "000000010000000000000003.00000028.backup",
        "000000020000000000000004",
    ]
    assert len(wal.archived(storage)) == 6 and read(tmp_path / "audit.jsonl") == []
    prune_wal(storage, [_base("000000010000000000000005")], trail)
    assert [a.name for a in wal.archived(storage)] == [
        "000000010000000000000005",
        "00000002.history",
        "000000020000000000000007",
    ]
    assert wal.partials(storage) == []
    assert [r["result"] for r in read(tmp_path / "audit.jsonl")] == ["started", "deleted"]
