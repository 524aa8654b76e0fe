"""verify-backup on real backups: a good one passes and is marked verified; each kind of damage fails at its
check, with a notification, the metric set to 0 and no temporary database left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sppg_backup.db import postgres
from sppg_backup.db.catalog import Manifest, list_backups, read_manifest, write_manifest
from sppg_backup.errors import CheckFailed
from sppg_backup.flows.backup_database import backup_database
from sppg_backup.flows.verify_backup import verify_backup
from sppg_backup.storage.local import LocalStorage

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def storage_of(env: dict[str, str]) -> LocalStorage:
    return LocalStorage(env["STORAGE_URL"].removeprefix("file://"))


def scratch_databases(cluster: Any) -> list[str]:
    with postgres.connect(cluster.url()) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'sppg\\_%'").fetchall()
    return [str(r[0]) for r in rows]


def verification_metric(env: dict[str, str]) -> float:
    text = Path(env["METRICS_FILE"]).read_text()
    return next(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "backup_verification_status"
    )


@pytest.fixture
def good(fresh_backup: dict[str, Any]) -> Manifest:
    return Manifest.model_validate(fresh_backup)


def test_good_backup_passes_and_is_marked_verified(
    good: Manifest, backup_env: dict[str, str], postgres_cluster: Any, webhook: Any
) -> None:
    result = verify_backup()
    assert result["backup_id"] == good.id and result["status"] == "passed"
    for storage in (storage_of(backup_env), LocalStorage(backup_env["LOCAL_DIR"])):
        stored = read_manifest(storage, "db", good.id)
        assert stored.verified and stored.verification and stored.verification.duration_seconds > 0
    assert verification_metric(backup_env) == 1
    assert scratch_databases(postgres_cluster) == []
    assert webhook.messages == []


def assert_fails_at(check: str, env: dict[str, str], cluster: Any, webhook: Any, backup_id: str | None = None) -> None:
    with pytest.raises(CheckFailed) as caught:
        verify_backup(backup_id=backup_id)
    assert caught.value.check == check
    assert scratch_databases(cluster) == []
    assert verification_metric(env) == 0
    [message] = webhook.messages
    assert message["type"] == "failure" and f"({check})" in message["title"] and "Next step" in message["message"]


def test_corrupt_backup_fails_sha256(
    good: Manifest, backup_env: dict[str, str], postgres_cluster: Any, webhook: Any
) -> None:
    path = storage_of(backup_env).path(good.data_key)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    path.unlink()  # a new inode: the local copy (a hard link) stays good
    path.write_bytes(bytes(raw))
    assert_fails_at("sha256", backup_env, postgres_cluster, webhook)
    assert good.id in webhook.messages[0]["message"]
    stored = read_manifest(storage_of(backup_env), "db", good.id)
    assert stored.verification and stored.verification.status == "failed" and stored.verification.check == "sha256"


def test_truncated_backup_fails_size(
    good: Manifest, backup_env: dict[str, str], postgres_cluster: Any, webhook: Any
) -> None:
    path = storage_of(backup_env).path(good.data_key)
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])
    assert_fails_at("size", backup_env, postgres_cluster, webhook)


def test_missing_manifest_fails_manifest(
    good: Manifest, backup_env: dict[str, str], postgres_cluster: Any, webhook: Any
) -> None:
    storage_of(backup_env).delete(f"db/{good.id}.manifest.json")
    assert_fails_at("manifest", backup_env, postgres_cluster, webhook, backup_id=good.id)


def test_empty_database_backup_fails_size(
    backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, postgres_cluster: Any, webhook: Any
) -> None:
    url = postgres_cluster.create_database("empty_erp")
    try:
        monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", url)
        backup_database()
        webhook.messages.clear()
        assert_fails_at("size", backup_env, postgres_cluster, webhook)
        assert "below the minimum" in webhook.messages[0]["message"]
    finally:
        postgres_cluster.drop_database("empty_erp")


def test_rows_missing_from_the_dump_fail_row_counts(
    good: Manifest, backup_env: dict[str, str], postgres_cluster: Any, webhook: Any
) -> None:
    tampered = good.model_copy(update={"tables": {**good.tables, "public.users": good.tables["public.users"] + 1}})
    write_manifest(storage_of(backup_env), tampered)
    assert_fails_at("row counts", backup_env, postgres_cluster, webhook)
    assert "public.users" in webhook.messages[0]["message"]


def test_cli_exit_codes_and_list_shows_verified(good: Manifest, backup_env: dict[str, str], prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    sppg = [sys.executable, "-m", "sppg_backup"]
    passed = subprocess.run([*sppg, "verify", "--latest", "--json"], env=env, capture_output=True, text=True)
    assert passed.returncode == 0 and json.loads(passed.stdout)["status"] == "passed"
    listed = json.loads(subprocess.run([*sppg, "list", "--json"], env=env, capture_output=True, text=True).stdout)
    assert listed["backups"][0]["verification"]["status"] == "passed"

    storage_of(backup_env).delete(f"db/{good.id}.manifest.json")
    failed = subprocess.run([*sppg, "verify", good.id], env=env, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"error: check 'manifest' failed: backup {good.id}: no manifest at "
        f"{storage_of(backup_env).root}/db/{good.id}.manifest.json; "
        "without it this is not a complete backup"
    ]
    assert list_backups(LocalStorage(backup_env["LOCAL_DIR"])).backups[0].verified
