"""A verify that fails for a reason of its own (the key, the scratch space) is an error of the run: reported
like every failure, and never a verdict that makes a good backup unusable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db.catalog import list_backups, read_manifest
from sppg_backup.storage import open_storage
from sppg_backup.stream.crypto import generate_key_file
from tests.helpers import cli, error_lines, tiny_filesystem

pytestmark = pytest.mark.integration


def still_usable(env: dict[str, str], backup_id: str, api: str) -> None:
    assert read_manifest(open_storage(env["STORAGE_URL"]), "db", backup_id).verification is None
    plan = cli("restore", "db", "--latest", "--dry-run", "--json", api=api)
    assert plan.returncode == 0 and backup_id in plan.stdout, plan.stderr


def audit_statuses(env: dict[str, str]) -> list[str]:
    lines = Path(env["AUDIT_LOG"]).read_text().splitlines()
    return [json.loads(line)["result"] for line in lines if json.loads(line)["action"] == "verify"]


@pytest.mark.parametrize("key", ["a folder", "another key"])
def test_a_bad_identity_file_fails_the_run_not_the_backup(
    fresh_backup: dict[str, Any],
    backup_env: dict[str, str],
    prefect_api: str,
    webhook: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    identity = tmp_path / "identity"
    if key == "a folder":
        identity.mkdir()
    else:
        generate_key_file(identity)
    monkeypatch.setenv("SPPG_BACKUP_AGE_IDENTITY_FILE", str(identity))
    done = cli("verify", "--latest", api=prefect_api)
    [line] = error_lines(done.stderr)
    assert done.returncode == 2 and "AGE_IDENTITY_FILE" in line, done.stderr
    if key == "another key":
        assert "is not one backup" in line and "encrypted to" in line
    monkeypatch.setenv("SPPG_BACKUP_AGE_IDENTITY_FILE", backup_env["AGE_IDENTITY_FILE"])  # the right key again
    still_usable(backup_env, fresh_backup["id"], prefect_api)
    assert audit_statuses(backup_env) == ["error"]
    assert [m["type"] for m in webhook.messages] == ["failure"]
    assert "Verification FAILED" in webhook.messages[0]["title"] and "not judged" in webhook.messages[0]["message"]


def test_a_full_scratch_disk_is_one_error_line_and_reported(
    fresh_backup: dict[str, Any],
    backup_env: dict[str, str],
    prefect_api: str,
    webhook: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tiny_filesystem(tmp_path / "scratch", size="64k") as scratch:
        monkeypatch.setenv("SPPG_BACKUP_SCRATCH_DIR", str(scratch))
        done = cli("verify", "--latest", api=prefect_api)
        [line] = error_lines(done.stderr)
        assert done.returncode == 1 and "no space left" in line.lower() and "SCRATCH_DIR" in line, done.stderr
        assert "unexpected" not in done.stderr
        assert list(scratch.iterdir()) == []  # nothing decrypted is left behind
    still_usable(backup_env, fresh_backup["id"], prefect_api)
    assert audit_statuses(backup_env) == ["error"]
    assert [m["type"] for m in webhook.messages] == ["failure"]


def test_verify_latest_after_a_restore_verifies_the_newest_scheduled_backup(
    fresh_backup: dict[str, Any], backup_env: dict[str, str], prefect_api: str
) -> None:
    done = cli("restore", "db", "--latest", "--yes", api=prefect_api)  # takes a safety backup, newer than it
    assert done.returncode == 0, done.stderr
    assert [m.purpose for m in list_backups(open_storage(backup_env["STORAGE_URL"])).backups] == ["backup", "safety"]
    done = cli("verify", "--latest", "--json", api=prefect_api)
    assert done.returncode == 0 and json.loads(done.stdout)["backup_id"] == fresh_backup["id"], done.stderr
