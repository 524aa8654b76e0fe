"""The Cloud SQL flows through Google's real client library against a local fake of the Cloud SQL Admin API
(tests/cloudsql_fake.py: Cloud SQL cannot run here, so this is the one mocked part): the requests sent, the
operation waited on, one that fails and one that never finishes, each one line and a failed run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloudsql_fake import FakeCloudSql
from tests.helpers import cli, error_lines

pytestmark = [pytest.mark.integration]


@pytest.fixture
def cloudsql(backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudSql]:
    fake = FakeCloudSql()
    for name, value in {
        "GCP_PROJECT": fake.project,
        "CLOUDSQL_INSTANCE": fake.instance,
        "CLOUDSQL_API_URL": fake.url,
        "CLOUDSQL_POLL_SECONDS": "0.05",
    }.items():
        monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    yield fake
    fake.server.shutdown()


def sent(fake: FakeCloudSql, method: str) -> list[tuple[str, dict[str, Any]]]:
    return [(path, body) for verb, path, body, _ in fake.requests if verb == method]


def one_line(done: Any, code: int = 1) -> str:
    assert done.returncode == code, done.stderr + done.stdout
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr, done.stderr
    [line] = error_lines(done.stderr)
    return line


def test_backups_are_listed_newest_first(cloudsql: FakeCloudSql, prefect_api: str) -> None:
    done = cli("cloudsql", "backups", "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert [run["id"] for run in json.loads(done.stdout)] == ["1701475200000", "1701388800000"]
    assert sent(cloudsql, "GET") == [("/v1/projects/erp-project/instances/erp-sppg-db/backupRuns", {})]


def test_a_restore_needs_yes_then_is_sent_waited_on_and_audited(
    cloudsql: FakeCloudSql, prefect_api: str, backup_env: dict[str, str], webhook: Any
) -> None:
    line = one_line(cli("cloudsql", "restore", "1701388800000", api=prefect_api), code=2)
    assert "replaces every database" in line and "--yes" in line
    assert sent(cloudsql, "POST") == []

    done = cli("cloudsql", "restore", "1701388800000", "--yes", "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "DONE"
    [(path, body)] = sent(cloudsql, "POST")
    assert path == "/v1/projects/erp-project/instances/erp-sppg-db/restoreBackup"
    assert body == {
        "restoreBackupContext": {"backupRunId": "1701388800000", "project": "erp-project", "instanceId": "erp-sppg-db"}
    }
    polls = [p for p, _ in sent(cloudsql, "GET") if "/operations/" in p]
    assert len(polls) == 2  # RUNNING, then DONE
    audit = [json.loads(line) for line in Path(backup_env["AUDIT_LOG"]).read_text().splitlines()]
    assert [(a["action"], a["target"], a["result"]) for a in audit if a["action"].startswith("cloudsql")] == [
        ("cloudsql.restore", "1701388800000", "ok"),  # the refused one did nothing: nothing to audit
    ]
    assert [m["title"] for m in webhook.messages][-1] == "Cloud SQL restore OK: 1701388800000"


def test_an_unknown_backup_is_refused_before_anything_is_sent(cloudsql: FakeCloudSql, prefect_api: str) -> None:
    line = one_line(cli("cloudsql", "restore", "42", "--yes", api=prefect_api))
    assert "has no backup 42" in line and "cloudsql backups" in line
    assert sent(cloudsql, "POST") == []


def test_a_clone_goes_to_the_point_in_time_given_in_wib(cloudsql: FakeCloudSql, prefect_api: str) -> None:
    done = cli(
        "cloudsql", "clone", "--point-in-time", "2026-12-01 10:30:59", "--name", "erp-sppg-db-restored", api=prefect_api
    )
    assert done.returncode == 0, done.stderr
    assert "erp-sppg-db-restored" in done.stdout
    [(path, body)] = sent(cloudsql, "POST")
    assert path == "/v1/projects/erp-project/instances/erp-sppg-db/clone"
    assert body == {
        "cloneContext": {"destinationInstanceName": "erp-sppg-db-restored", "pointInTime": "2026-12-01T03:30:59.000Z"}
    }
    line = one_line(
        cli("cloudsql", "clone", "--point-in-time", "2026-12-01T03:30Z", "--name", "erp-sppg-db", api=prefect_api)
    )
    assert "already exists" in line


def test_an_operation_that_fails_or_never_finishes_is_one_line_and_a_failed_run(
    cloudsql: FakeCloudSql, prefect_api: str, webhook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloudsql.outcome = "error"
    line = one_line(cli("cloudsql", "restore", "1701475200000", "--yes", api=prefect_api))
    assert "failed (operation" in line and "INTERNAL_ERROR: the backup could not be read" in line
    assert [m["title"] for m in webhook.messages][-1] == "Cloud SQL restore FAILED: 1701475200000"

    cloudsql.outcome = "hang"
    monkeypatch.setenv("SPPG_BACKUP_CLOUDSQL_TIMEOUT_SECONDS", "1")
    line = one_line(
        cli("cloudsql", "clone", "--point-in-time", "2026-12-01T03:30Z", "--name", "erp-copy", api=prefect_api)
    )
    assert "still RUNNING after 1 s" in line and "gcloud sql operations describe" in line


def test_settings_missing_are_one_line(backup_env: dict[str, str], prefect_api: str) -> None:
    line = one_line(cli("cloudsql", "backups", api=prefect_api), code=2)
    assert "SPPG_BACKUP_GCP_PROJECT" in line and "SPPG_BACKUP_CLOUDSQL_INSTANCE" in line
