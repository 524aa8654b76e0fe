"""Prune on real backups: local 30 days, cloud 365 days, never the newest good one, every deletion audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db import dump
from sppg_backup.db.catalog import Manifest, Verification, list_backups, write_manifest
from sppg_backup.flows.prune_backups import prune_backups
from sppg_backup.ops import audit
from sppg_backup.settings import load_settings
from sppg_backup.storage import destinations
from sppg_backup.storage.local import LocalStorage

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def make_backups(ages_days: list[int], verified: set[int] = frozenset()) -> dict[int, str]:  # type: ignore[assignment]
    """Real backups of the sample database, their manifests back-dated by the given ages."""
    settings = load_settings()
    dest = destinations.open_destinations(settings)
    made = {}
    now = datetime.now(UTC)
    for age in ages_days:
        created = now - timedelta(days=age)
        manifest = dump.dump(settings, dest, dump.reserve_id(dest.storage, created))
        check = Verification(status="passed", checked_at=created) if age in verified else None
        manifest = manifest.model_copy(update={"created_at": created, "verification": check})
        for storage in dest.all:
            write_manifest(storage, manifest)
        made[age] = manifest.id
    return made


def ids_in(root: str) -> set[str]:
    return {m.id for m in list_backups(LocalStorage(root.removeprefix("file://"))).backups}


def test_prune_applies_local_and_cloud_retention(backup_env: dict[str, str]) -> None:
    made = make_backups([400, 100, 40, 0])
    results = prune_backups()
    assert ids_in(backup_env["STORAGE_URL"]) == {made[100], made[40], made[0]}
    assert ids_in(backup_env["LOCAL_DIR"]) == {made[0]}
    assert sorted(results[0]["deleted"]) == [made[400]]
    assert sorted(results[1]["deleted"]) == sorted([made[400], made[100], made[40]])
    # data files went with their manifests: nothing orphaned
    for root in (backup_env["STORAGE_URL"], backup_env["LOCAL_DIR"]):
        assert list_backups(LocalStorage(root.removeprefix("file://"))).orphans == []


def test_prune_never_deletes_the_newest_nor_newest_verified(backup_env: dict[str, str]) -> None:
    made = make_backups([800, 700, 600], verified={700})
    prune_backups()
    assert ids_in(backup_env["STORAGE_URL"]) == {made[700], made[600]}
    assert ids_in(backup_env["LOCAL_DIR"]) == {made[700], made[600]}


def test_dry_run_deletes_nothing(backup_env: dict[str, str]) -> None:
    made = make_backups([400, 0])
    results = prune_backups(dry_run=True)
    assert results[0]["deleted"] == [made[400]]
    assert ids_in(backup_env["STORAGE_URL"]) == set(made.values())
    assert ids_in(backup_env["LOCAL_DIR"]) == set(made.values())
    assert audit.read(Path(backup_env["AUDIT_LOG"])) == []


def test_every_deletion_is_audited_before_and_after(backup_env: dict[str, str]) -> None:
    made = make_backups([400, 0])
    prune_backups()
    records = [r for r in audit.read(Path(backup_env["AUDIT_LOG"])) if r["action"] == "prune.delete"]
    assert [(r["target"], r["result"]) for r in records] == [
        (made[400], "started"),
        (made[400], "deleted"),  # storage
        (made[400], "started"),
        (made[400], "deleted"),  # local copy
    ]
    assert records[0]["details"]["reason"] == "older than 365 days"
    assert "flow_run" in records[0]["actor"]


def test_prune_cli_json_and_dry_run(backup_env: dict[str, str], prefect_api: str) -> None:
    made = make_backups([400, 0])
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    done = subprocess.run(
        [sys.executable, "-m", "sppg_backup", "prune", "--dry-run", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    report: list[dict[str, Any]] = json.loads(done.stdout)
    assert report[0]["deleted"] == [made[400]] and report[0]["kept"] == [made[0]]
    assert ids_in(backup_env["STORAGE_URL"]) == set(made.values())


def test_list_cli_shows_backups_from_storage_alone(backup_env: dict[str, str], tmp_path: Path) -> None:
    made = make_backups([2, 0])
    (
        Path(backup_env["STORAGE_URL"].removeprefix("file://")) / "db" / "erp_sppg_backup_20200101_000000.dump.zst.age"
    ).write_bytes(b"partial")
    # a new machine: nothing but the storage URL
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SPPG_BACKUP_STORAGE_URL": backup_env["STORAGE_URL"]}
    done = subprocess.run(
        [sys.executable, "-m", "sppg_backup", "list", "--json"], capture_output=True, text=True, env=env, check=True
    )
    listing = json.loads(done.stdout)
    assert [b["id"] for b in listing["backups"]] == [made[2], made[0]]
    assert listing["incomplete"] == ["db/erp_sppg_backup_20200101_000000.dump.zst.age"]
    table = subprocess.run([sys.executable, "-m", "sppg_backup", "list"], capture_output=True, text=True, env=env)
    assert made[0] in table.stdout and "WIB" in table.stdout
    assert "has no manifest: incomplete, not a backup" in table.stderr
    manifest = Manifest.model_validate(listing["backups"][0])
    assert manifest.tables["public.users"] == 20


def test_incomplete_uploads_go_only_once_past_retention(backup_env: dict[str, str]) -> None:
    made = make_backups([0])
    storage_root = Path(backup_env["STORAGE_URL"].removeprefix("file://"))
    old = storage_root / "db" / "erp_sppg_backup_20240101_000000.dump.zst.age"
    young = storage_root / "db" / "erp_sppg_backup_20261101_000000.dump.zst.age"
    for path in (old, young):
        path.write_bytes(b"an upload whose run failed before its manifest")
    os.utime(old, (0, (datetime.now(UTC) - timedelta(days=400)).timestamp()))
    os.utime(young, (0, (datetime.now(UTC) - timedelta(days=20)).timestamp()))
    results = prune_backups()
    assert results[0]["deleted"] == ["db/erp_sppg_backup_20240101_000000.dump.zst.age"]
    assert not old.exists() and young.exists()
    assert ids_in(backup_env["STORAGE_URL"]) == {made[0]}


def test_prune_keeps_the_database_backup_of_a_full_system_backup(backup_env: dict[str, str]) -> None:
    from sppg_backup.full import system
    from sppg_backup.storage import open_storage

    made = make_backups([400, 399, 0])
    now = datetime.now(UTC)
    database = system.Part(name="database", kind="database", ref=made[400])
    full = system.FullSet(
        id="erp_sppg_full_20250101_000000",
        created_at=now,
        finished_at=now,
        duration_seconds=1,
        app_dir=None,
        images=[],
        parts=[database],
        encryption="age",
    )
    system.publish(open_storage(backup_env["STORAGE_URL"]), full)
    results = prune_backups()
    assert ids_in(backup_env["STORAGE_URL"]) == {made[400], made[0]}
    assert results[0]["reasons"][made[400]] == f"the database of full-system backup {full.id}"
