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
