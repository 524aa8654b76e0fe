"""Bad input: one clear line, exit 1, a failed flow run, a failure notification, nothing partial, nothing lost."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.flows.backup_database import backup_database
from sppg_backup.storage import open_storage
from sppg_backup.storage.local import LocalStorage
from tests.helpers import cli, free_port, read_only_dir, tiny_filesystem

pytestmark = pytest.mark.integration


def last_backup_run_state(api: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> str:
        async with get_client() as client:
            [run] = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["backup-database"])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            return str(run.state.type.value if run.state else "")

    return asyncio.run(read())


@pytest.fixture
def baseline(fresh_backup: dict[str, Any], backup_env: dict[str, str]) -> dict[str, Any]:
    """One good backup made before the failing run; it must survive untouched."""
    manifest = fresh_backup
    stored = Path(backup_env["STORAGE_URL"].removeprefix("file://")) / manifest["data_key"]
    return {"id": manifest["id"], "bytes": stored.read_bytes(), "path": stored}


def assert_failed_cleanly(
    result: subprocess.CompletedProcess[str],
    expected: str,
    env: dict[str, str],
    api: str,
    webhook: Any,
    baseline: dict[str, Any],
    code: int = 1,
) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING retrying")]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0] and "unexpected" not in lines[0]
    assert env["DATABASE_URL"].split(":")[2].split("@")[0] not in result.stderr  # no password shown
    assert last_backup_run_state(api) == "FAILED"
    [message] = webhook.messages
    assert message["type"] == "failure" and expected in message["message"] and "Next step" in message["message"]
    for storage in (open_storage(env["STORAGE_URL"]), LocalStorage(env["LOCAL_DIR"])):
        listing = list_backups(storage)
        assert [m.id for m in listing.backups] == [baseline["id"]]
        assert listing.orphans == []
    assert baseline["path"].read_bytes() == baseline["bytes"]


def test_unreachable_database(
    baseline: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    webhook: Any,
) -> None:
    port = free_port()
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", f"postgresql://postgres:pw@127.0.0.1:{port}/erp_sppg")
    result = cli("backup", "db", api=prefect_api)
    assert result.stderr.count("WARNING retrying check-database") == 2  # RETRIES=2, then the error
    assert_failed_cleanly(
        result, f"cannot reach database erp_sppg on 127.0.0.1:{port}", backup_env, prefect_api, webhook, baseline
    )


def test_wrong_password(
    baseline: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    webhook: Any,
    postgres_cluster: Any,
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", postgres_cluster.url("erp_sppg", password="not-the-password"))
    result = cli("backup", "db", api=prefect_api)
    assert "not-the-password" not in result.stderr
    assert_failed_cleanly(
        result, "refused login for user postgres: wrong password", backup_env, prefect_api, webhook, baseline
    )


def test_missing_pg_dump(
    baseline: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    webhook: Any,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_PG_BIN_DIR", str(tmp_path / "no-postgres-here"))
    result = cli("backup", "db", api=prefect_api)
    assert_failed_cleanly(
        result, "pg_dump for PostgreSQL 15 or newer not found", backup_env, prefect_api, webhook, baseline
    )


def test_pg_dump_dying_midway_leaves_no_partial_backup(
    baseline: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    webhook: Any,
    tmp_path: Path,
    postgres_cluster: Any,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "pg_dump"  # the real pg_dump, cut off after 200 kB as if killed
    real = postgres_cluster.bin_dir / "pg_dump"
    wrapper.write_text(
        f'#!/bin/sh\n[ "$1" = --version ] && exec {real} --version\n{real} "$@" | head -c 200000\nexit 1\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("SPPG_BACKUP_PG_BIN_DIR", str(bin_dir))
    result = cli("backup", "db", api=prefect_api)
    assert_failed_cleanly(result, "pg_dump of erp_sppg on 127.0.0.1", backup_env, prefect_api, webhook, baseline)


def test_storage_denied(baseline: dict[str, Any], backup_env: dict[str, str], prefect_api: str, webhook: Any) -> None:
    with read_only_dir(Path(backup_env["STORAGE_URL"].removeprefix("file://")) / "db"):
        result = cli("backup", "db", api=prefect_api)
    assert_failed_cleanly(result, "permission denied", backup_env, prefect_api, webhook, baseline)


def test_storage_bucket_missing(
    baseline: dict[str, Any],
    backup_env: dict[str, str],
    gcs_emulator: str,
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    webhook: Any,
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_STORAGE_URL", "gs://no-such-bucket/backups")
    result = cli("backup", "db", api=prefect_api)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "bucket no-such-bucket does not exist" in result.stderr
    assert last_backup_run_state(prefect_api) == "FAILED"
    assert "no-such-bucket" in webhook.messages[0]["message"]
    assert [m.id for m in list_backups(LocalStorage(backup_env["LOCAL_DIR"])).backups] == [baseline["id"]]


def test_local_disk_full(
    baseline: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    webhook: Any,
    tmp_path: Path,
) -> None:
    with tiny_filesystem(tmp_path / "small", size="256k") as small:
        monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", str(small))
        result = cli("backup", "db", api=prefect_api)
        assert list(LocalStorage(small).list()) == []
    monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", backup_env["LOCAL_DIR"])
    assert_failed_cleanly(result, "no space left on device", backup_env, prefect_api, webhook, baseline)


def test_no_recipients_with_encryption_on(
    baseline: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefect_api: str,
    webhook: Any,
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_AGE_RECIPIENTS", "")
    result = cli("backup", "db", api=prefect_api)
    assert_failed_cleanly(
        result,
        "SPPG_BACKUP_AGE_RECIPIENTS: empty while encryption is on",
        backup_env,
        prefect_api,
        webhook,
        baseline,
        2,
    )


def test_bad_setting_names_it_and_exits_2(
    backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_COMPRESSION", "lz4")
    for args in (("backup", "db"), ("config", "show"), ("list",)):
        result = cli(*args, api=prefect_api)
        assert result.returncode == 2
        assert result.stderr.strip() == "error: bad setting SPPG_BACKUP_COMPRESSION: Input should be 'zstd' or 'gzip'"


def task_run_counts(flow_run_id: Any) -> dict[str, int]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, int]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}

    return asyncio.run(read())


def test_only_transient_errors_are_retried(
    backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, prefect_api: str, postgres_cluster: Any
) -> None:
    from sppg_backup.errors import PermanentError, TransientError

    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", f"postgresql://postgres:pw@127.0.0.1:{free_port()}/erp_sppg")
    state = backup_database(return_state=True)
    assert state.is_failed()
    with pytest.raises(TransientError):
        state.result()
    assert task_run_counts(state.state_details.flow_run_id)["check-database"] == 3  # RETRIES=2

    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", postgres_cluster.url("erp_sppg", password="wrong"))
    state = backup_database(return_state=True)
    with pytest.raises(PermanentError):
        state.result()
    assert task_run_counts(state.state_details.flow_run_id)["check-database"] == 1
