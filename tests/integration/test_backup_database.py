"""The daily backup end to end on a real PostgreSQL: round trip, copies, manifest, notify, metrics, audit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sppg_backup.db.catalog import Manifest, list_backups
from sppg_backup.db.restore import fetch_dump
from sppg_backup.flows.backup_database import backup_database
from sppg_backup.ops import audit
from sppg_backup.storage import open_storage
from sppg_backup.storage.local import LocalStorage
from sppg_backup.stream.crypto import load_identities
from tests.dbcheck import drop, restore_into_new_database, table_contents
from tests.helpers import tiny_filesystem

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def restore_and_compare(cluster: Any, storage_url: str, manifest: Manifest, key: Path, tmp_path: Path) -> None:
    dump_file = fetch_dump(open_storage(storage_url), manifest, load_identities(key), tmp_path / "plain.dump")
    url = restore_into_new_database(cluster, dump_file)
    try:
        restored = table_contents(url)
        assert restored == table_contents(manifest_source_url(cluster, manifest))
        assert {name: rows for name, (rows, _) in restored.items()} == manifest.tables
    finally:
        drop(cluster, url)


def manifest_source_url(cluster: Any, manifest: Manifest) -> str:
    return str(cluster.url(manifest.source.database))


def test_backup_round_trip_restores_every_table_equal(
    backup_env: dict[str, str], postgres_cluster: Any, age_key: tuple[Path, str], tmp_path: Path
) -> None:
    manifest = Manifest.model_validate(backup_database())
    assert manifest.id.startswith("erp_sppg_backup_")
    assert manifest.encryption == "age" and manifest.recipients == [age_key[1]]
    assert manifest.tables["public.users"] == 20 and len(manifest.tables) == 9
    restore_and_compare(postgres_cluster, backup_env["STORAGE_URL"], manifest, age_key[0], tmp_path)


def test_backup_is_stored_in_storage_and_local_copy_and_listed(backup_env: dict[str, str]) -> None:
    manifest = Manifest.model_validate(backup_database())
    for root in (Path(backup_env["STORAGE_URL"].removeprefix("file://")), Path(backup_env["LOCAL_DIR"])):
        listing = list_backups(LocalStorage(root))
        assert [m.id for m in listing.backups] == [manifest.id]
        assert listing.orphans == [] and listing.unreadable == []
        stored = root / manifest.data_key
        assert stored.stat().st_size == manifest.size
        assert not stored.read_bytes().startswith(b"PGDMP")  # encrypted, not a plain dump


def test_backup_to_gcs_emulator_restores_equal(
    backup_env: dict[str, str],
    gcs_bucket_url: str,
    monkeypatch: pytest.MonkeyPatch,
    postgres_cluster: Any,
    age_key: tuple[Path, str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_STORAGE_URL", gcs_bucket_url)
    manifest = Manifest.model_validate(backup_database())
    storage = open_storage(gcs_bucket_url)
    assert [m.id for m in list_backups(storage).backups] == [manifest.id]
    assert storage.stat(manifest.data_key).sha256 == manifest.sha256
    restore_and_compare(postgres_cluster, gcs_bucket_url, manifest, age_key[0], tmp_path)


def test_gzip_without_encryption_round_trip(
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_cluster: Any,
    age_key: tuple[Path, str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_COMPRESSION", "gzip")
    monkeypatch.setenv("SPPG_BACKUP_ENCRYPTION", "false")
    manifest = Manifest.model_validate(backup_database())
    assert manifest.data_key.endswith(".dump.gz") and manifest.encryption == "none"
    restore_and_compare(postgres_cluster, backup_env["STORAGE_URL"], manifest, age_key[0], tmp_path)


def test_restore_by_hand_with_age_zstd_and_pg_restore(
    backup_env: dict[str, str], postgres_cluster: Any, age_key: tuple[Path, str], tmp_path: Path
) -> None:
    """Exactly the README's manual restore (but the gcloud download): sha256sum, age -d | zstd -d, pg_restore."""
    manifest = Manifest.model_validate(backup_database())
    name = Path(manifest.data_key).name
    for path in (Path(backup_env["LOCAL_DIR"]) / "db").glob(manifest.id + ".*"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    script = f"""
        set -euo pipefail
        expected=$(grep -o '"sha256": "[0-9a-f]*"' {manifest.id}.manifest.json | cut -d'"' -f4)
        test "$(sha256sum {name} | cut -d' ' -f1)" = "$expected"
        age -d -i {age_key[0]} {name} | zstd -d > erp.dump
        export PGHOST=127.0.0.1 PGPORT={postgres_cluster.port} PGUSER=postgres PGPASSWORD={postgres_cluster.password}
        createdb erp_sppg_restored
        pg_restore --no-owner -j 2 -d erp_sppg_restored erp.dump
    """
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"PATH": f"{postgres_cluster.bin_dir}:/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        restored = postgres_cluster.url("erp_sppg_restored")
        assert table_contents(restored) == table_contents(backup_env["DATABASE_URL"])
    finally:
        postgres_cluster.drop_database("erp_sppg_restored")


def test_success_is_notified_measured_and_audited(backup_env: dict[str, str], webhook: Any) -> None:
    manifest = Manifest.model_validate(backup_database())

    [message] = webhook.messages
    assert manifest.id in message["title"] and message["type"] == "success"
    assert f"{manifest.size} bytes" in message["message"] and "Duration" in message["message"]
    assert "WIB" in message["message"]

    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(Path(backup_env["METRICS_FILE"]).read_text())
        for s in family.samples
    }
    assert samples["backup_last_success_timestamp"] == pytest.approx(manifest.finished_at.timestamp())
    assert samples["backup_file_size_bytes"] == manifest.size
    assert samples["backup_duration_seconds"] == manifest.duration_seconds

    records = audit.read(Path(backup_env["AUDIT_LOG"]))
    assert records[-1]["action"] == "backup" and records[-1]["result"] == "ok"
    assert records[-1]["target"] == manifest.id and "flow_run" in records[-1]["actor"]
    copies = [o.key for o in open_storage(backup_env["STORAGE_URL"]).list("audit/")]
    assert any(
        json.loads((Path(backup_env["STORAGE_URL"][7:]) / k).read_text())["target"] == manifest.id for k in copies
    )


def test_run_leaves_a_markdown_artifact(backup_env: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    manifest = Manifest.model_validate(backup_database())

    async def latest() -> Any:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backup-database"])),
                sort=ArtifactSort.CREATED_DESC,
                limit=50,
            )
            return [a for a in found if manifest.id in str(a.data)]

    import asyncio

    [artifact] = asyncio.run(latest())
    assert "public.users" in artifact.data and artifact.type == "markdown"


def test_two_backups_in_the_same_second_get_distinct_ids(backup_env: dict[str, str]) -> None:
    first = backup_database()
    second = backup_database()
    assert first["id"] != second["id"]
    listing = list_backups(open_storage(backup_env["STORAGE_URL"]))
    assert len(listing.backups) == 2


def test_local_copy_is_a_hard_link_on_the_same_disk_and_a_real_copy_on_another(
    backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manifest = Manifest.model_validate(backup_database())
    stored = Path(backup_env["STORAGE_URL"].removeprefix("file://")) / manifest.data_key
    local = Path(backup_env["LOCAL_DIR"]) / manifest.data_key
    assert stored.stat().st_ino == local.stat().st_ino  # written once, named twice

    with tiny_filesystem(tmp_path / "other-disk", size="64m") as other:
        monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", str(other))
        second = Manifest.model_validate(backup_database())
        copy = other / second.data_key
        original = Path(backup_env["STORAGE_URL"].removeprefix("file://")) / second.data_key
        assert copy.stat().st_dev != original.stat().st_dev
        assert copy.read_bytes() == original.read_bytes() and copy.stat().st_size == second.size


def test_metrics_are_pushed_to_the_pushgateway(
    backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, webhook: Any
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_PUSHGATEWAY_URL", f"http://127.0.0.1:{webhook.port}")
    manifest = Manifest.model_validate(backup_database())
    [(method, path, body)] = [r for r in webhook.requests if r[1].startswith("/metrics/")]
    assert (method, path) == ("POST", "/metrics/job/sppg_backup/kind/db")
    samples = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert samples["backup_file_size_bytes"] == manifest.size
    assert samples["backup_last_run_success"] == 1


def test_demo_command_backs_up_the_sample_database(prefect_api: str, tmp_path: Path) -> None:
    """The README's first command, minus installing: throwaway PostgreSQL, demo key, file:// storage."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")}
    env["PREFECT_API_URL"] = prefect_api
    sppg = [sys.executable, "-m", "sppg_backup"]
    done = subprocess.run(
        [*sppg, "demo", "--workdir", str(tmp_path), "--scale", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "rows in 9 tables" in done.stdout and "backup erp_sppg_backup_" in done.stdout
    listed = subprocess.run(
        [*sppg, "--config", str(tmp_path / "sppg-backup.toml"), "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    [backup] = json.loads(listed.stdout)["backups"]
    assert backup["encryption"] == "age" and backup["tables"]["public.users"] == 20
    assert (tmp_path / "storage" / backup["data_key"]).exists() and (tmp_path / "demo-key.txt").exists()
