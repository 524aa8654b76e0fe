"""restore-database deployed from prefect.yaml to a real Prefect server, run by a process worker, triggered
through the API with the form's parameters; and a failed run retried through the API, finished steps kept."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from sppg_backup.db import postgres
from sppg_backup.db.catalog import list_backups
from sppg_backup.forms import NEWEST_SNAPSHOT
from sppg_backup.storage.local import LocalStorage
from tests.dbcheck import table_contents
from tests.e2e.client import artifacts, deployment, retry, task_runs, task_states, trigger, wait_final
from tests.e2e.tools import break_pg_restore

pytestmark = pytest.mark.e2e


def test_restore_triggered_through_the_api_with_form_parameters(scene: dict[str, Any], worker: str) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    run_id = trigger(
        worker, {"request": {"backup_id": scene["backup"].id, "confirm": True}, "config_file": str(scene["config"])}
    )
    run = wait_final(worker, run_id)
    assert run.state.type.value == "COMPLETED", run.state.message
    assert table_contents(scene["url"]) == scene["good"]
    engine = scene["engine"]
    assert {c.name: c.status for c in engine.client.containers.list(all=True)} == {
        "e2e-backend-1": "running",
        "e2e-backend-2": "running",
    }
    events = engine.client.events(
        since=since, until=datetime.now(UTC) + timedelta(seconds=2), decode=True, filters={"type": "container"}
    )
    actions = [(e["Actor"]["Attributes"]["name"], e["Action"]) for e in events if e["Action"] in ("stop", "start")]
    for name in ("e2e-backend-1", "e2e-backend-2"):
        assert [a for n, a in actions if n == name][-2:] == ["stop", "start"]


def failed_restore(scene: dict[str, Any], worker: str) -> UUID:
    run_id = trigger(worker, {"request": {"confirm": True}, "config_file": str(scene["config"])})
    run = wait_final(worker, run_id)
    assert run.state.type.value == "FAILED"
    first = task_states(worker, run_id)
    assert first["safety-backup"] == "Completed" and first["download-backup"] == "Completed"
    assert first["restore-into-target"] == "Failed"
    return run_id


def test_a_retry_after_fixing_the_config_redoes_only_what_failed(
    scene: dict[str, Any], worker: str, postgres_cluster: Any
) -> None:
    original = break_pg_restore(scene, postgres_cluster)
    with postgres.connect(scene["url"]):  # someone on the target during the first run only
        run_id = failed_restore(scene, worker)
    scene["config"].write_text(original)  # the fix, in the config file: the settings differ on the retry
    run = retry(worker, run_id)
    assert run.state.type.value == "COMPLETED", run.state.message
    assert table_contents(scene["url"]) == scene["good"]
    states = task_states(worker, run_id)
    assert states["safety-backup"] == "Cached" and states["download-backup"] == "Cached"
    backups = list_backups(LocalStorage(scene["tmp"] / "storage")).backups
    assert [m.purpose for m in backups] == ["backup", "safety"]  # one safety backup, not two
    assert list((scene["tmp"] / "scratch").iterdir()) == []  # the decrypted dump is gone after success


@pytest.mark.parametrize("damage", ["gone", "changed"])
def test_a_retry_downloads_again_when_the_kept_download_is_gone_or_changed(
    scene: dict[str, Any], worker: str, postgres_cluster: Any, damage: str
) -> None:
    original = break_pg_restore(scene, postgres_cluster)
    run_id = failed_restore(scene, worker)
    [archive] = (scene["tmp"] / "scratch").glob("*/*.dump")
    if damage == "gone":  # a reboot cleared the scratch folder
        shutil.rmtree(archive.parent)
    else:
        with open(archive, "r+b") as dump:
            dump.seek(archive.stat().st_size // 2)
            dump.write(b"\0" * 16)
    scene["config"].write_text(original)
    run = retry(worker, run_id)
    assert run.state.type.value == "COMPLETED", run.state.message
    assert table_contents(scene["url"]) == scene["good"]
    states = task_states(worker, run_id)
    assert states["safety-backup"] == "Cached" and states["download-backup"] == "Completed"


def test_a_retry_takes_the_safety_backup_again_when_it_was_deleted(
    scene: dict[str, Any], worker: str, postgres_cluster: Any
) -> None:
    original = break_pg_restore(scene, postgres_cluster)
    run_id = failed_restore(scene, worker)
    storage = LocalStorage(scene["tmp"] / "storage")
    [safety] = [m for m in list_backups(storage).backups if m.purpose == "safety"]
    for obj in storage.list(f"db/{safety.id}"):  # someone cleaned the bucket between the runs
        storage.delete(obj.key)
    scene["config"].write_text(original)
    run = retry(worker, run_id)
    assert run.state.type.value == "COMPLETED", run.state.message
    safety_runs = sorted(
        (t for t in task_runs(worker, run_id) if t.name.startswith("safety-backup")), key=lambda t: t.created
    )
    assert [t.state.name for t in safety_runs] == ["Completed", "Cached", "Completed"]
    backups = list_backups(storage).backups
    assert [m.purpose for m in backups] == ["backup", "safety"] and backups[1].id != safety.id
    assert table_contents(scene["url"]) == scene["good"]


def report_of(url: str, run_id: UUID) -> str:
    [found] = [a for a in artifacts(url, run_id) if a.type == "markdown"]
    return str(found.data)


def test_a_file_snapshot_fills_the_restore_form_and_is_restored_from_it(
    scene: dict[str, Any], worker: str, tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    (uploads / "2026" / "12").mkdir(parents=True)
    (uploads / "2026" / "12" / "invoice.pdf").write_bytes(b"%PDF-1.4 invoice 42")
    settings = scene["config"].read_text()
    scene["config"].write_text(settings + f'uploads_dir = "{tmp_path / "missing"}"\n')
    params = {"config_file": str(scene["config"])}
    run_id = trigger(worker, params, "backup-files/every-5-minutes")
    assert wait_final(worker, run_id).state.type.value == "FAILED"
    assert "backup FAILED" in report_of(worker, run_id) and "missing" in report_of(worker, run_id)

    scene["config"].write_text(settings + f'uploads_dir = "{uploads}"\n')
    run_id = trigger(worker, params, "backup-files/every-5-minutes")
    assert wait_final(worker, run_id).state.type.value == "COMPLETED"
    assert ": 1 files" in report_of(worker, run_id)
    schema = deployment(worker, "restore-files/on-demand").parameter_openapi_schema
    choices = schema["definitions"]["FilesRestoreRequest"]["properties"]["snapshot_id"]["enum"]
    assert choices[0] == NEWEST_SNAPSHOT and len(choices) == 2
    assert choices[1].startswith("erp_sppg_files_") and "1 files" in choices[1] and "WIB" in choices[1]

    target = tmp_path / "restored"
    request = {"snapshot_id": choices[1], "target": str(target)}
    run_id = trigger(worker, {"request": request, **params}, "restore-files/on-demand")
    assert wait_final(worker, run_id).state.type.value == "COMPLETED"
    assert (target / "2026" / "12" / "invoice.pdf").read_bytes() == b"%PDF-1.4 invoice 42"
    assert "restore OK" in report_of(worker, run_id)
