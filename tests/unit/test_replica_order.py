"""What replicate copies and in which order: contents before the manifests that list them, full-system sets
last, and never the primary's bookkeeping (claims, leases, its alert state)."""

from sppg_backup.ops.replicas import order, replicated


def test_manifests_go_after_what_they_list_and_sets_last() -> None:
    keys = [
        "full/erp_sppg_full_20261201_010000.manifest.json",
        "db/erp_sppg_backup_20261201_030000.manifest.json",
        "db/erp_sppg_backup_20261201_030000.dump.zst.age",
        "wal/000000010000000000000003.abc.zst.age",
        "base/erp_sppg_base_20261201_020000.manifest.json",
        "full/erp_sppg_full_20261201_010000/app-1234.tar.zst.age",
    ]
    ranked = sorted(keys, key=order)
    assert ranked[:3] == sorted(k for k in keys if not k.endswith(".manifest.json"))
    assert ranked[3:5] == [
        "base/erp_sppg_base_20261201_020000.manifest.json",
        "db/erp_sppg_backup_20261201_030000.manifest.json",
    ]
    assert ranked[-1] == "full/erp_sppg_full_20261201_010000.manifest.json"


def test_the_primarys_bookkeeping_is_not_replicated() -> None:
    assert replicated("db/erp_sppg_backup_20261201_030000.dump.zst.age")
    assert replicated("audit/2026/12/01/x.json")
    assert not replicated("db/erp_sppg_backup_20261201_030000.reserved")
    assert not replicated("files/running/erp_sppg_files_20261201_030000")
    assert not replicated("health/state.json")


def test_a_partial_wal_segment_goes_from_a_replica_once_its_whole_segment_is_there(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sppg_backup.ops.replicas import replicate
    from sppg_backup.storage.local import LocalStorage

    primary, replica = LocalStorage(tmp_path / "p"), LocalStorage(tmp_path / "r")
    done, writing, stale = "000000010000000000000003", "000000010000000000000004", "000000010000000000000005"
    primary.create(f"wal/{done}.{'a' * 64}.zst.age", b"whole")  # finished: its partial was deleted here
    primary.create(f"wal/{writing}.partial.zst.age", b"still being written")
    for name in (done, writing, stale):  # an earlier pass copied the partials
        replica.create(f"wal/{name}.partial.zst.age", b"part")
    replicate(primary, replica)
    held = {o.key for o in replica.list("wal/")}
    assert f"wal/{done}.partial.zst.age" not in held and f"wal/{done}.{'a' * 64}.zst.age" in held
    assert f"wal/{writing}.partial.zst.age" in held  # the storage still has it
    assert f"wal/{stale}.partial.zst.age" in held  # no whole segment there: the only copy of that WAL
