"""Physical base backups: pg_basebackup over a plain replication connection, streamed into storage, listed with
its WAL facts, restorable by hand with age, zstd and tar into a server that starts with the same data."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sppg_backup.db.postgres import row_counts
from sppg_backup.sandbox.clusters import Cluster, fill_sample
from tests.helpers import cli, error_lines, unpack_base

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def physical_cluster() -> Iterator[Cluster]:
    """A cluster of its own: a base backup takes every database of the server."""
    cluster = Cluster().start()
    fill_sample(cluster.create_database("erp_sppg"), 1)
    yield cluster
    cluster.stop()


@pytest.fixture
def base_env(backup_env: dict[str, str], physical_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", physical_cluster.url("erp_sppg"))
    return {**backup_env, "DATABASE_URL": physical_cluster.url("erp_sppg")}


def test_a_base_backup_is_listed_and_restores_by_hand_to_the_same_data(
    base_env: dict[str, str], physical_cluster: Cluster, prefect_api: str
) -> None:
    done = cli("backup", "base", "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    physical = manifest["physical"]
    assert manifest["kind"] == "base" and manifest["encryption"] == "age" and physical["timeline"] == 1
    assert physical["start_wal"].startswith("00000001") and physical["wal_included"]
    with psycopg.connect(physical_cluster.url()) as conn:
        system = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert system is not None and physical["system_identifier"] == system[0]
    listed = json.loads(cli("list", "--kind", "base", "--json", api=prefect_api).stdout)
    assert [m["id"] for m in listed["backups"]] == [manifest["id"]] and listed["incomplete"] == []
    stored = Path(base_env["STORAGE_URL"].removeprefix("file://")) / manifest["data_key"]
    assert (Path(base_env["LOCAL_DIR"]) / manifest["data_key"]).exists()

    key = Path(base_env["AGE_IDENTITY_FILE"])
    folder = Path(tempfile.mkdtemp(prefix="sppg-restored-"))  # not below tmp_path: the postgres user must reach it
    restored = Cluster(unpack_base(stored, key, folder, physical_cluster.password)).start()
    try:
        with (
            psycopg.connect(physical_cluster.url("erp_sppg")) as source,
            psycopg.connect(restored.url("erp_sppg")) as copy,
        ):
            assert row_counts(copy) == row_counts(source) and row_counts(source)["public.users"] > 0
    finally:
        restored.stop()


def test_a_role_that_may_not_replicate_is_one_line_and_nothing_listed(
    base_env: dict[str, str], physical_cluster: Cluster, prefect_api: str, webhook: Any
) -> None:
    with psycopg.connect(physical_cluster.url(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS reader")
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
    url = f"postgresql://reader:reader-pw@127.0.0.1:{physical_cluster.port}/erp_sppg"
    Path(base_env["STORAGE_URL"].removeprefix("file://")).mkdir(parents=True)
    done = cli("backup", "base", api=prefect_api, env={"SPPG_BACKUP_REPLICATION_URL": url})
    assert done.returncode == 1
    [line] = error_lines(done.stderr)
    assert "user reader may not replicate" in line and "ALTER ROLE reader REPLICATION" in line
    assert "reader-pw" not in done.stderr
    assert "Base backup FAILED" in webhook.messages[-1]["title"]
    listed = json.loads(cli("list", "--kind", "base", "--json", api=prefect_api).stdout)
    assert listed["backups"] == [] and listed["incomplete"] == []


def test_the_weekly_schedule_skips_where_pitr_is_not_set_up(base_env: dict[str, str], prefect_api: str) -> None:
    from sppg_backup.flows.backup_base import backup_base

    assert backup_base(only_with_pitr=True) == {"status": "skipped", "reason": "SPPG_BACKUP_PITR is off"}
    storage = Path(base_env["STORAGE_URL"].removeprefix("file://"))
    assert not (storage / "base").exists() or list((storage / "base").iterdir()) == []
