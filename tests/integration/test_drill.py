"""The weekly recovery drill on real backups: RTO and RPO measured, smoke checks and application tests run,
a report kept in storage, the scratch database always dropped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest

from sppg_backup.db.drill import history
from sppg_backup.errors import CheckFailed
from sppg_backup.flows.recovery_drill import recovery_drill
from sppg_backup.storage.local import LocalStorage
from tests.integration.test_verify import scratch_databases

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def storage_of(env: dict[str, str]) -> LocalStorage:
    return LocalStorage(env["STORAGE_URL"].removeprefix("file://"))


def test_drill_restores_checks_and_reports_rto_rpo(
    fresh_backup: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_cluster: Any,
    webhook: Any,
) -> None:
    # the application's tests see the restored database through DATABASE_URL and PG* variables
    check = (
        "import os, psycopg; c = psycopg.connect(os.environ['DATABASE_URL']); "
        "assert c.execute('select count(*) from invoices').fetchone()[0] == 1000; print('app tests ok')"
    )
    monkeypatch.setenv("SPPG_BACKUP_DRILL_TEST_COMMAND", f'{sys.executable} -c "{check}"')
    monkeypatch.setenv(
        "SPPG_BACKUP_DRILL_CHECKS",
        json.dumps(
            [
                {"name": "users exist", "sql": "SELECT count(*) > 0 FROM users", "expect": "true"},
                {"name": "schools", "sql": "SELECT count(*) FROM schools", "expect": "10"},
            ]
        ),
    )
    result = recovery_drill()
    assert result["status"] == "passed" and result["backup_id"] == fresh_backup["id"]
    assert 0 < result["rto_seconds"] < 60
    created = datetime.fromisoformat(fresh_backup["created_at"])
    started = datetime.fromisoformat(result["started_at"])
    assert result["rpo_seconds"] == pytest.approx((started - created).total_seconds(), abs=0.01)
    assert {"download", "restore", "smoke checks", "application tests"} <= set(result["steps"])
    assert [c["passed"] for c in result["smoke_checks"]] == [True, True]
    assert result["app_test"]["exit_code"] == 0 and "app tests ok" in result["app_test"]["output_tail"]
    assert scratch_databases(postgres_cluster) == []
    [report], _ = history(storage_of(backup_env))
    assert report.id == result["id"] and report.rto_seconds == result["rto_seconds"]
    [message] = webhook.messages
    assert "RTO" in message["title"] and message["type"] == "success"


def test_failing_smoke_check_fails_the_drill_and_still_cleans_up(
    fresh_backup: dict[str, Any],
    backup_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_cluster: Any,
    webhook: Any,
) -> None:
    monkeypatch.setenv(
        "SPPG_BACKUP_DRILL_CHECKS",
        json.dumps(
            [
                {"name": "enough users", "sql": "SELECT count(*) >= 1000 FROM users", "expect": "true"},
                {"name": "bad query", "sql": "SELECT count(*) FROM no_such_table", "expect": "1"},
            ]
        ),
    )
    with pytest.raises(CheckFailed) as caught:
        recovery_drill()
    assert caught.value.check == "smoke checks"
    assert "enough users: got false, expected true" in str(caught.value)
    assert "no_such_table" in str(caught.value)
    assert scratch_databases(postgres_cluster) == []
    [report], _ = history(storage_of(backup_env))
    assert report.status == "failed" and report.failed_step == "smoke checks" and report.rto_seconds is None
    assert webhook.messages[0]["type"] == "failure" and "smoke checks" in webhook.messages[0]["title"]


def test_failing_application_tests_fail_the_drill(
    fresh_backup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, postgres_cluster: Any
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_DRILL_TEST_COMMAND", "echo 'FAIL: TestInvoices'; exit 3")
    with pytest.raises(CheckFailed, match="exited with 3: FAIL: TestInvoices") as caught:
        recovery_drill()
    assert caught.value.check == "application tests"
    assert scratch_databases(postgres_cluster) == []


def test_drill_of_a_corrupt_backup_fails_at_download_and_cleans_up(
    fresh_backup: dict[str, Any], backup_env: dict[str, str], postgres_cluster: Any
) -> None:
    path = storage_of(backup_env).path(fresh_backup["data_key"])
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckFailed) as caught:
        recovery_drill()
    assert caught.value.check == "sha256"
    assert scratch_databases(postgres_cluster) == []


def test_drill_history_cli(fresh_backup: dict[str, Any], backup_env: dict[str, str], prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    sppg = [sys.executable, "-m", "sppg_backup"]
    first = subprocess.run([*sppg, "drill", "--json"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    drill_id = json.loads(first.stdout)["id"]
    shown = subprocess.run([*sppg, "drill", "--history"], env=env, capture_output=True, text=True, check=True)
    assert drill_id in shown.stdout and "passed" in shown.stdout
    as_json = json.loads(
        subprocess.run(
            [*sppg, "drill", "--history", "--json"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    assert [r["id"] for r in as_json] == [drill_id] and as_json[0]["rto_seconds"] > 0
