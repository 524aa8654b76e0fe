"""Uploads and configuration through the sppg-backup command and its Prefect flows, as on-call would run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.files.snapshots import list_snapshots
from sppg_backup.storage import open_storage
from tests.helpers import cli

pytestmark = pytest.mark.integration
SECRET = "DB_PASSWORD=s3cr3t-Ku4t-sekali"


@pytest.fixture
def files_env(backup_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    app = tmp_path / "opt" / "erp-sppg"
    (app / "nginx" / "conf.d").mkdir(parents=True)
    (app / "docker-compose.prod.yml").write_text("services:\n  backend-1:\n    image: erp-sppg-backend:latest\n")
    (app / ".env").write_text(SECRET + "\n")
    (app / ".env").chmod(0o600)
    (app / "nginx" / "conf.d" / "erp.conf").write_text("server { listen 443 ssl; }\n")
    outside = tmp_path / "etc" / "cron.d" / "sppg"
    outside.parent.mkdir(parents=True)
    outside.write_text("0 3 * * * root true\n")
    uploads = app / "uploads"
    (uploads / "2024" / "12" / "01").mkdir(parents=True)
    (uploads / "2024" / "12" / "01" / "invoice 1.pdf").write_bytes(b"%PDF first")
    settings = {
        "APP_DIR": str(app),
        "UPLOADS_DIR": str(uploads),
        "CONFIG_PATHS": ",".join(
            str(p) for p in (app / "docker-compose.prod.yml", app / ".env", app / "nginx", outside)
        ),
        "STATE_DIR": str(tmp_path / "state"),
    }
    for name, value in settings.items():
        monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    return {"app": app, "uploads": uploads, "outside": outside, "tmp": tmp_path, **backup_env, **settings}


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def test_config_is_snapshotted_only_when_it_changed_and_restores_in_place(
    files_env: dict[str, Any], prefect_api: str, webhook: Any
) -> None:
    first = ok(cli("backup", "config", "--json", api=prefect_api))
    assert json.loads(first)["files"] == 4
    assert "nothing changed" in ok(cli("backup", "config", api=prefect_api))
    os.utime(files_env["app"] / ".env")  # touched, same content: still nothing to keep
    assert "nothing changed" in ok(cli("backup", "config", api=prefect_api))
    (files_env["app"] / "nginx" / "conf.d" / "erp.conf").write_text("server { listen 443 ssl http2; }\n")
    assert "snapshot erp_sppg_config_" in ok(cli("backup", "config", api=prefect_api))
    listed = json.loads(ok(cli("list", "--kind", "config", "--json", api=prefect_api)))
    assert len(listed) == 2
    target = files_env["tmp"] / "restored"
    ok(cli("restore", "config", listed[0]["id"], "--target", str(target), api=prefect_api))
    assert (target / ".env").read_text() == SECRET + "\n"
    only = files_env["tmp"] / "only-env"  # one broken file back, from the newest snapshot
    ok(cli("restore", "config", "--latest", "--path", ".env", "--target", str(only), api=prefect_api))
    assert [p.name for p in only.iterdir()] == [".env"]
    assert (target / ".env").stat().st_mode & 0o777 == 0o600
    assert (target / "nginx" / "conf.d" / "erp.conf").read_text() == "server { listen 443 ssl; }\n"
    outside = files_env["outside"]
    assert (target / outside.as_posix().lstrip("/")).read_text() == outside.read_text()
    # The secret is encrypted in storage and never shown anywhere.
    storage = Path(files_env["STORAGE_URL"].removeprefix("file://"))
    stored = b"".join(p.read_bytes() for p in storage.rglob("*") if p.is_file())
    assert b"s3cr3t" not in stored
    shown = json.dumps(webhook.messages) + Path(files_env["AUDIT_LOG"]).read_text()
    assert "s3cr3t" not in shown


def test_uploads_backup_history_and_restore_of_one_version(
    files_env: dict[str, Any], prefect_api: str, webhook: Any
) -> None:
    invoice = files_env["uploads"] / "2024" / "12" / "01" / "invoice 1.pdf"
    ok(cli("backup", "files", api=prefect_api))
    invoice.write_bytes(b"%PDF second")
    ok(cli("backup", "files", api=prefect_api))
    metrics = Path(files_env["METRICS_FILE"]).read_text()
    assert 'backup_last_success_timestamp{kind="files"}' in metrics  # what the FilesSnapshotMissing alert watches
    versions = json.loads(ok(cli("history", "2024/12/01/invoice 1.pdf", "--json", api=prefect_api)))
    assert [v["size"] for v in versions] == [len(b"%PDF first"), len(b"%PDF second")]
    target = files_env["tmp"] / "back"
    snapshot = versions[0]["first_snapshot"]
    args = ("restore", "files", "--snapshot", snapshot, "--path", "2024/12/01/invoice 1.pdf", "--target", str(target))
    ok(cli(*args, api=prefect_api))
    assert (target / "2024" / "12" / "01" / "invoice 1.pdf").read_bytes() == b"%PDF first"
    webhook.messages.clear()
    restored = target / "2024" / "12" / "01" / "invoice 1.pdf"
    restored.write_bytes(b"%PDF edited since")
    again = cli(*args, api=prefect_api)  # a different file is there now: never overwritten without --overwrite
    lines = [line for line in again.stderr.splitlines() if line.strip()]
    assert again.returncode == 1 and len(lines) == 1 and "--overwrite" in lines[0], again.stderr
    assert [m["type"] for m in webhook.messages] == ["failure"]
    assert restored.read_bytes() == b"%PDF edited since"


def test_a_missing_uploads_folder_is_one_clear_error(
    files_env: dict[str, Any], prefect_api: str, webhook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_UPLOADS_DIR", str(files_env["tmp"] / "no-such-folder"))
    result = cli("backup", "files", api=prefect_api)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "SPPG_BACKUP_UPLOADS_DIR" in lines[0] and "no-such-folder" in lines[0]
    [message] = webhook.messages
    assert message["type"] == "failure" and "no-such-folder" in message["message"]


def test_watch_takes_a_snapshot_when_and_only_when_something_changed(
    files_env: dict[str, Any], prefect_api: str
) -> None:
    storage = open_storage(files_env["STORAGE_URL"])

    def count() -> int:
        return len(list_snapshots(storage, "files").snapshots)

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 90
        while count() < n:
            assert time.monotonic() < deadline, f"no snapshot {n} within 90 s"
            time.sleep(0.2)

    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    command = [sys.executable, "-m", "sppg_backup", "backup", "files", "--watch", "--interval", "0.3"]
    watcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(1)
        time.sleep(2)
        assert count() == 1  # nothing changed: no new snapshot
        (files_env["uploads"] / "2024" / "12" / "01" / "new invoice.pdf").write_bytes(b"%PDF new")
        wait_for(2)
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(30) == 0
    names = {n.path for n in read_index_of_newest(storage, files_env)}
    assert "2024/12/01/new invoice.pdf" in names


def read_index_of_newest(storage: Any, env: dict[str, Any]) -> list[Any]:
    from sppg_backup.files import snapshots
    from sppg_backup.stream import crypto

    newest = list_snapshots(storage, "files").snapshots[-1]
    return snapshots.read_index(storage, newest, crypto.load_identities(Path(env["AGE_IDENTITY_FILE"])))


def test_status_alerts_when_uploads_snapshots_stop(files_env: dict[str, Any], prefect_api: str, webhook: Any) -> None:
    def files_alerts() -> list[str]:
        result = cli("status", "--json", api=prefect_api)
        return [a["name"] for a in json.loads(result.stdout)["alerts"] if a["name"].startswith("files")]

    assert files_alerts() == ["files_snapshot_missing"]  # an uploads folder and no snapshot of it
    ok(cli("backup", "files", api=prefect_api))
    assert files_alerts() == []
    assert any("files_snapshot_missing" in json.dumps(m) for m in webhook.messages)  # announced when it started
