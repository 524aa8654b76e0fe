"""Every flow leaves its report in the UI as a markdown artifact of its run, on success and on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.flows.backup_config import backup_config
from sppg_backup.flows.backup_database import backup_database
from sppg_backup.flows.check_backup_health import check_backup_health
from sppg_backup.flows.prune_backups import prune_backups
from sppg_backup.flows.prune_file_snapshots import prune_file_snapshots
from sppg_backup.flows.recovery_drill import recovery_drill
from sppg_backup.flows.verify_backup import verify_backup


def report_of(run: Callable[..., Any], **parameters: Any) -> tuple[str, str, str]:
    """Run the flow; its final state type and its one markdown artifact's title and text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = run(**parameters, return_state=True)
    run_id = state.state_details.flow_run_id

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )

    [found] = [a for a in asyncio.run(read()) if a.type == "markdown"]
    return state.type.value, str(found.description), str(found.data)


@pytest.fixture
def env(backup_env: dict[str, str], prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "docker-compose.prod.yml").write_text("services: {}\n")
    monkeypatch.setenv("SPPG_BACKUP_CONFIG_PATHS", str(config / "docker-compose.prod.yml"))
    monkeypatch.setenv("SPPG_BACKUP_UPLOADS_DIR", "")
    return config


def test_the_daily_flows_report_success_in_an_artifact(env: Path) -> None:
    state, title, text = report_of(backup_database)
    assert state == "COMPLETED" and "Backup OK" in title and "public.users" in text
    state, title, text = report_of(verify_backup)
    assert state == "COMPLETED" and "passed" in title.lower() and "test restore" in text.lower()
    state, title, text = report_of(recovery_drill)
    assert state == "COMPLETED" and "RTO" in text
    state, title, text = report_of(prune_backups, dry_run=True)
    assert state == "COMPLETED" and "would" in text.lower()
    state, title, text = report_of(backup_config)
    assert state == "COMPLETED" and "1 files" in title
    state, title, text = report_of(prune_file_snapshots, dry_run=True)
    assert state == "COMPLETED" and "snapshot" in text.lower()
    state, title, text = report_of(check_backup_health)
    assert state == "COMPLETED" and title == "Backups healthy"


def test_the_daily_flows_report_failure_in_an_artifact_with_a_next_step(
    env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/erp_sppg")
    for flow, cause in ((backup_database, "127.0.0.1:1"), (verify_backup, "no backup"), (recovery_drill, "no backup")):
        state, title, text = report_of(flow)
        assert state == "FAILED" and "FAILED" in title, (flow.name, title)
        assert cause in text and "Next step" in text, text
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("SPPG_BACKUP_STORAGE_URL", (tmp_path / "not-a-folder").as_uri())
    for flow in (prune_backups, backup_config, prune_file_snapshots, check_backup_health):
        state, title, text = report_of(flow)
        assert state == "FAILED" and "FAILED" in title, (flow.name, title)
        assert "not-a-folder" in text and "Next step" in text, text


def test_an_audit_trail_that_cannot_be_written_is_said_and_never_hides_the_outcome(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gone").write_text("")  # a file where the audit log's folder should be: no record can be written
    monkeypatch.setenv("SPPG_BACKUP_AUDIT_LOG", str(tmp_path / "gone" / "audit.jsonl"))
    state, title, text = report_of(backup_database)
    assert state == "COMPLETED" and "Backup OK" in title and "the audit record was not written" in text
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/erp_sppg")
    state, title, text = report_of(backup_database)
    assert state == "FAILED" and "FAILED" in title and "127.0.0.1:1" in text
    assert "the audit record was not written" in text
