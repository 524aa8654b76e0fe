"""verify of a base backup and the point-in-time drill: unpacked on a scratch server, pg_verifybackup, started,
smoke-checked, removed; a damaged one fails with one line and is recorded as failed; nothing is left running
or on disk."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from sppg_backup.db.catalog import read_manifest
from sppg_backup.ops import scratch
from sppg_backup.sandbox.clusters import Cluster
from sppg_backup.storage.local import LocalStorage
from tests.helpers import cli, error_lines
from tests.integration.test_base_backup import base_env, physical_cluster

pytestmark = pytest.mark.integration
__all__ = ["base_env", "physical_cluster"]


def postgres_servers_in(folder: Path) -> list[str]:
    """Command lines of the processes running from `folder` (a scratch server left running would be one)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and str(folder) in line:
            found.append(line)
    return found


def test_a_base_backup_is_verified_by_starting_it_and_a_damaged_one_fails(
    base_env: dict[str, str], prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path(tempfile.mkdtemp(prefix="sppg-state-"))  # the postgres user must pass through its parents
    monkeypatch.setenv("SPPG_BACKUP_STATE_DIR", str(state))
    checks = [{"name": "users", "sql": "SELECT count(*) > 0 FROM users", "expect": "true"}]
    monkeypatch.setenv("SPPG_BACKUP_DRILL_CHECKS", json.dumps(checks))
    try:
        made = cli("backup", "base", "--json", api=prefect_api)
        assert made.returncode == 0, made.stderr
        backup_id = json.loads(made.stdout)["id"]
        done = cli("verify", "--kind", "base", "--json", api=prefect_api)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["backup_id"] == backup_id and result["status"] == "passed"
        assert "pg_verifybackup" in result["detail"] and "smoke checks" in result["detail"]
        storage = LocalStorage(Path(base_env["STORAGE_URL"].removeprefix("file://")))
        verification = read_manifest(storage, "base", backup_id).verification
        assert verification is not None and verification.status == "passed"
        assert postgres_servers_in(state) == [] and list((state / "scratch").iterdir()) == []

        drilled = cli("drill", "--pitr", "--json", api=prefect_api)
        assert drilled.returncode == 0, drilled.stderr
        drill = json.loads(drilled.stdout)
        assert (drill["kind"], drill["status"], drill["backup_id"]) == ("pitr", "passed", backup_id)
        assert drill["rto_seconds"] > 0 and 0 <= drill["rpo_seconds"] < 300
        assert {"download and unpack", "list WAL", "recover", "smoke checks"} <= set(drill["steps"])
        history = cli("drill", "--history", "--json", api=prefect_api)
        assert [d["id"] for d in json.loads(history.stdout)] == [drill["id"]]
        assert postgres_servers_in(state) == [] and list((state / "scratch").iterdir()) == []

        data = storage.folder / read_manifest(storage, "base", backup_id).data_key  # type: ignore[operator]
        damaged = bytearray(data.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        data.write_bytes(bytes(damaged))
        bad = cli("verify", backup_id, api=prefect_api)
        assert bad.returncode != 0
        [line] = error_lines(bad.stderr)
        assert backup_id in line and "Traceback" not in bad.stderr
        verification = read_manifest(storage, "base", backup_id).verification
        assert verification is not None and verification.status == "failed"
        assert postgres_servers_in(state) == [] and list((state / "scratch").iterdir()) == []
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_a_scratch_server_a_killed_run_left_running_is_stopped_and_removed() -> None:
    root = Path(tempfile.mkdtemp(prefix="sppg-scratch-"))
    folder = root / "killed-run-verify-base-backup"
    folder.mkdir()
    if os.geteuid() == 0:  # the server runs as postgres, like the check's own
        root.chmod(0o711)
        shutil.chown(folder, "postgres", "postgres")
    left = Cluster(folder).start()
    try:
        old = time.time() - 60
        os.utime(folder, (old, old))
        assert postgres_servers_in(folder) != []
        assert scratch.clean_abandoned(root) == [folder]
        assert postgres_servers_in(folder) == [] and not folder.exists()
    finally:
        left.stop()
        shutil.rmtree(root, ignore_errors=True)
