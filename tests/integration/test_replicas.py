"""Replicas in a second region (scenario 3) on real storage: a folder and the GCS emulator's bucket with the
real google-cloud-storage client. A backup reaches every replica as it is made; the DR region lists, verifies and
restores from its replica alone; a replica that was offline catches up and its lag alert fires and clears; a
damaged copy is found and copied again; a replica only loses what the primary's retention deleted."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sppg_backup.db.catalog import list_backups, read_manifest, write_manifest
from sppg_backup.errors import BackupError, CheckFailed
from sppg_backup.flows.backup_database import backup_database
from sppg_backup.flows.check_backup_health import check_backup_health
from sppg_backup.flows.prune_backups import prune_backups
from sppg_backup.flows.replicate_backups import replicate_backups
from sppg_backup.ops import replicas
from sppg_backup.ops.audit import AuditTrail
from sppg_backup.storage import open_storage
from sppg_backup.storage.local import LocalStorage
from tests.helpers import cli, read_only_dir

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def with_replicas(
    backup_env: dict[str, str], tmp_path: Path, gcs_bucket_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    folder = tmp_path / "dr-folder"
    monkeypatch.setenv("SPPG_BACKUP_REPLICA_URLS", f"{folder.as_uri()},{gcs_bucket_url}")
    return {"folder": folder, "bucket": gcs_bucket_url, "primary": tmp_path / "storage"}


def keys_of(url: str) -> dict[str, int]:
    return {o.key: o.size for o in open_storage(url).list("")}


def lag_metrics(env: dict[str, str]) -> dict[str, float]:
    text = Path(env["METRICS_FILE"]).read_text()
    return {
        s.labels["replica"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "backup_replica_lag_seconds"
    }


def test_a_backup_reaches_every_replica_and_the_dr_region_restores_from_one_alone(
    with_replicas: dict[str, Any], backup_env: dict[str, str], prefect_api: str, tmp_path: Path
) -> None:
    made = backup_database()
    primary = keys_of(backup_env["STORAGE_URL"])
    for url in (with_replicas["folder"].as_uri(), with_replicas["bucket"]):
        held = keys_of(url)
        assert {k: v for k, v in primary.items() if k.startswith("db/")} == {
            k: v for k, v in held.items() if k.startswith("db/")
        }
    # The primary's region is gone: the DR host has the replica, the key and a login to a new database.
    shutil.rmtree(with_replicas["primary"])
    dr = {"SPPG_BACKUP_STORAGE_URL": "file:///nonexistent/primary", "SPPG_BACKUP_LOCAL_DIR": ""}
    listed = cli("--storage", with_replicas["bucket"], "list", "--json", api=prefect_api, env=dr)
    assert listed.returncode == 0, listed.stderr
    assert [b["id"] for b in json.loads(listed.stdout)["backups"]] == [made["id"]]
    verified = cli("--storage", with_replicas["bucket"], "verify", api=prefect_api, env=dr)
    assert verified.returncode == 0, verified.stderr  # a real test restore from the replica
    assert made["id"] in verified.stdout


def test_an_offline_replica_is_an_alert_until_it_caught_up(
    with_replicas: dict[str, Any], backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder: Path = with_replicas["folder"]
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder: the replica is unreadable")
    made = backup_database()  # the backup is good and listed even though one replica failed
    assert made["id"] in [b.id for b in list_backups(open_storage(backup_env["STORAGE_URL"])).backups]
    with pytest.raises(CheckFailed, match="not replicated"):
        replicate_backups()
    result = check_backup_health()
    names = {a["name"]: a["summary"] for a in result["alerts"]}
    assert "cannot be read" in names["replica_behind_1"] and "replica_behind_2" not in names
    assert lag_metrics(backup_env)[folder.as_uri()] == float("inf")
    assert lag_metrics(backup_env)[with_replicas["bucket"]] < 60  # only the audit records since its pass

    folder.unlink()  # back online, empty: the next pass copies everything it lacks
    done = replicate_backups()
    [first, second] = done["replicas"]
    assert made["data_key"] in first["copied"] and not first["failed"]
    assert [k for k in second["copied"] if not k.startswith("audit/")] == []  # it had the rest already
    assert not check_backup_health()["alerts"]
    assert lag_metrics(backup_env)[folder.as_uri()] < 60
    assert keys_of(folder.as_uri()).keys() >= {k for k in keys_of(backup_env["STORAGE_URL"]) if k.startswith("db/")}


def test_a_damaged_copy_is_found_and_copied_again(with_replicas: dict[str, Any], backup_env: dict[str, str]) -> None:
    made = backup_database()
    copy = with_replicas["folder"] / made["data_key"]
    original = (with_replicas["primary"] / made["data_key"]).read_bytes()
    damaged = bytearray(copy.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # same size, same date: only reading it back tells
    copy.write_bytes(bytes(damaged))
    assert not replicate_backups()["replicas"][0]["repaired"]
    done = replicate_backups(verify=True)
    assert done["replicas"][0]["repaired"] == [made["data_key"]]
    assert copy.read_bytes() == original


def test_a_replica_loses_only_what_retention_deleted(
    with_replicas: dict[str, Any], backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, lost, newest = backup_database(), backup_database(), backup_database()
    primary = LocalStorage(with_replicas["primary"])
    aged = read_manifest(primary, "db", old["id"])
    write_manifest(primary, aged.model_copy(update={"created_at": datetime.now(UTC) - timedelta(days=400)}))
    replicate_backups()  # the rewritten manifest goes across too
    # the primary loses one backup by accident: the replicas keep theirs
    primary.delete(lost["data_key"])
    primary.delete(f"db/{lost['id']}.manifest.json")
    replicate_backups()  # copies, never deletes
    monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", "")
    prune_backups()
    for url in (with_replicas["folder"].as_uri(), with_replicas["bucket"]):
        held = keys_of(url)
        assert old["data_key"] not in held and f"db/{old['id']}.manifest.json" not in held  # retention's
        assert lost["data_key"] in held and newest["data_key"] in held  # never the primary's accident
    audit = [json.loads(line) for line in Path(backup_env["AUDIT_LOG"]).read_text().splitlines()]
    on_replicas = [a for a in audit if a["action"] == "prune.delete" and a["details"]["location"].startswith("gs://")]
    assert {a["target"] for a in on_replicas} >= {old["data_key"]}


def test_a_backup_damaged_here_is_never_listed_on_a_replica(
    backup_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = backup_database()
    path = tmp_path / "storage" / made["data_key"]
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # the recorded sha256 no longer matches
    path.write_bytes(bytes(damaged))
    replica = tmp_path / "dr-new"
    monkeypatch.setenv("SPPG_BACKUP_REPLICA_URLS", replica.as_uri())
    with pytest.raises(CheckFailed, match="not replicated"):
        replicate_backups()
    assert list_backups(LocalStorage(replica)).backups == []  # neither the data nor a manifest naming it
    assert not (replica / made["data_key"]).exists()


def test_a_delete_the_storage_refused_leaves_the_replicas_alone(tmp_path: Path) -> None:
    primary, replica = LocalStorage(tmp_path / "p"), LocalStorage(tmp_path / "r")
    for storage in (primary, replica):
        storage.create("db/erp_sppg_backup_1.dump.zst.age", b"data")
    trail = AuditTrail(tmp_path / "audit.jsonl", None, {"user": "test"})
    mirrored = replicas.mirrored(primary, (replica,), trail)
    with read_only_dir(tmp_path / "p" / "db"), pytest.raises(BackupError):
        mirrored.delete("db/erp_sppg_backup_1.dump.zst.age")  # a retention lock on the bucket, say
    assert (tmp_path / "r" / "db" / "erp_sppg_backup_1.dump.zst.age").exists()
    mirrored.delete("db/erp_sppg_backup_1.dump.zst.age")
    assert not (tmp_path / "r" / "db" / "erp_sppg_backup_1.dump.zst.age").exists()
