"""check-backup-health on real storage: alerts named, exit codes, one notification when an alert starts and one
when it clears; failures reach a real SMTP server and a webhook with text that says what to do next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sppg_backup.db.catalog import read_manifest, write_manifest
from sppg_backup.errors import BackupError, CheckFailed
from sppg_backup.flows.backup_database import backup_database
from sppg_backup.flows.check_backup_health import check_backup_health
from sppg_backup.flows.verify_backup import verify_backup
from sppg_backup.storage import open_storage
from sppg_backup.storage.local import LocalStorage
from tests.helpers import tiny_filesystem

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def notify_both(backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, webhook: Any, mailbox: Any) -> None:
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_URLS", f"{webhook.url},{mailbox.url}")


def alert_names(result: dict[str, Any]) -> list[str]:
    return [a["name"] for a in result["alerts"]]


def test_missing_backup_alert_is_announced_once_and_its_clearing_once(
    notify_both: None, backup_env: dict[str, str], webhook: Any, mailbox: Any
) -> None:
    assert alert_names(check_backup_health()) == ["backup_missing"]
    assert alert_names(check_backup_health()) == ["backup_missing"]  # still active: no second message
    assert [m["title"] for m in webhook.messages] == [
        "ALERT backup_missing: no successful backup in 25 hours (there is none)"
    ]
    [(subject, body)] = mailbox.texts()
    assert subject.startswith("ALERT backup_missing") and "Next step:" in body and "backup db" in body

    backup_database()
    webhook.messages.clear()
    assert check_backup_health()["healthy"]
    assert check_backup_health()["healthy"]
    assert [m["title"] for m in webhook.messages] == ["RESOLVED backup_missing"]


def test_size_drop_alert(backup_env: dict[str, str]) -> None:
    backup_database()
    second = backup_database()
    storage = LocalStorage(backup_env["STORAGE_URL"].removeprefix("file://"))
    shrunk = read_manifest(storage, "db", second["id"]).model_copy(update={"size": second["size"] // 3})
    write_manifest(storage, shrunk)
    result = check_backup_health()
    assert alert_names(result) == ["backup_size_drop"]
    assert second["id"] in result["alerts"][0]["summary"]


def test_corrupted_backup_fails_verify_raises_the_alert_and_notifies_by_mail_and_webhook(
    notify_both: None, backup_env: dict[str, str], webhook: Any, mailbox: Any
) -> None:
    manifest = backup_database()
    webhook.messages.clear()
    mailbox.messages.clear()
    path = Path(backup_env["STORAGE_URL"].removeprefix("file://")) / manifest["data_key"]
    raw = bytearray(path.read_bytes())
    raw[-5000] ^= 0x10
    path.unlink()
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckFailed):
        verify_backup()
    result = check_backup_health()
    assert alert_names(result) == ["verification_failed"] and "sha256" in result["alerts"][0]["summary"]

    mails = mailbox.texts()
    assert len(mails) == 2  # the verification failure and the alert
    subject, body = mails[0]
    assert manifest["id"] in subject and "(sha256)" in subject
    assert "check 'sha256'" in body and "Next step: the stored file is corrupt" in body
    titles = [m["title"] for m in webhook.messages]
    assert titles[0].startswith("Backup verification FAILED (sha256)") and titles[1].startswith(
        "ALERT verification_failed"
    )
    metrics = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(Path(backup_env["METRICS_FILE"]).read_text())
        for s in f.samples
    }
    assert metrics[("backup_verification_status", (("kind", "db"),))] == 0
    assert metrics[("backup_health_alerts", (("kind", "db"),))] == 1


def test_storage_over_80_percent_full(
    backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gcs_bucket_url: str
) -> None:
    backup_database()
    with tiny_filesystem(tmp_path / "small", size="1m") as small:
        (small / "filler").write_bytes(b"x" * 900_000)
        monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", str(small))
        result = check_backup_health()
    assert alert_names(result) == ["storage_full_local"]
    assert "small is 8" in result["alerts"][0]["summary"] or "small is 9" in result["alerts"][0]["summary"]

    # a bucket is judged against the configured quota
    monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", backup_env["LOCAL_DIR"])
    monkeypatch.setenv("SPPG_BACKUP_STORAGE_URL", gcs_bucket_url)
    monkeypatch.setenv("SPPG_BACKUP_BUCKET_QUOTA_BYTES", "700000")
    backup_database()
    used = sum(o.size for o in open_storage(gcs_bucket_url).list(""))
    assert used > 560_000
    assert "storage_full_storage" in alert_names(check_backup_health())
    text = Path(backup_env["METRICS_FILE"]).read_text()
    assert 'backup_storage_used_ratio{location="storage"}' in text


def test_each_severity_reaches_the_channels_set_for_it(
    backup_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, webhook: Any, mailbox: Any
) -> None:
    """Mail is told everything, Slack warnings and critical failures, the SMS gateway critical ones only (the
    guide's "SMS for critical failures"); an alert's clearing goes where its start went."""
    slack, sms = webhook.url.replace("/hook", "/slack"), webhook.url.replace("/hook", "/sms")
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_URLS", mailbox.url)
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_WARNING_URLS", slack)
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_CRITICAL_URLS", sms)

    def told() -> dict[str, list[str]]:
        got = {"mail": [subject for subject, _ in mailbox.texts()], "slack": [], "sms": []}
        for _, path, body in webhook.requests:
            got[path.strip("/")].append(json.loads(body)["title"])
        mailbox.messages.clear()
        webhook.requests.clear()
        return {channel: [title.split(":")[0] for title in titles] for channel, titles in got.items()}

    check_backup_health()  # critical: no backup at all
    assert told() == {
        "mail": ["ALERT backup_missing"],
        "slack": ["ALERT backup_missing"],
        "sms": ["ALERT backup_missing"],
    }
    first = backup_database()
    assert told() == {"mail": ["Backup OK"], "slack": [], "sms": []}
    check_backup_health()
    assert told() == {
        "mail": ["RESOLVED backup_missing"],
        "slack": ["RESOLVED backup_missing"],
        "sms": ["RESOLVED backup_missing"],
    }

    storage = LocalStorage(backup_env["STORAGE_URL"].removeprefix("file://"))
    second = backup_database()
    shrunk = read_manifest(storage, "db", second["id"]).model_copy(update={"size": first["size"] // 3})
    write_manifest(storage, shrunk)
    told()
    check_backup_health()  # a warning: the size dropped
    assert told() == {"mail": ["ALERT backup_size_drop"], "slack": ["ALERT backup_size_drop"], "sms": []}

    # The key has been in use longer than KEY_MAX_AGE_DAYS (here a tenth of a second): a warning too, its age a metric.
    monkeypatch.setenv("SPPG_BACKUP_KEY_MAX_AGE_DAYS", "0.000001")
    [old] = [a for a in check_backup_health()["alerts"] if a["name"] == "encryption_key_old"]
    assert "in use since" in old["summary"] and "rotates it yearly" in old["summary"]
    assert told() == {"mail": ["ALERT encryption_key_old"], "slack": ["ALERT encryption_key_old"], "sms": []}
    ages = [
        s.value
        for f in text_string_to_metric_families(Path(backup_env["METRICS_FILE"]).read_text())
        for s in f.samples
        if s.name == "backup_encryption_key_age_seconds"
    ]
    assert len(ages) == 1 and 0 < ages[0] < 3600
    monkeypatch.delenv("SPPG_BACKUP_KEY_MAX_AGE_DAYS")

    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/erp")
    with pytest.raises(BackupError):
        backup_database()
    assert told() == {"mail": ["Backup FAILED"], "slack": ["Backup FAILED"], "sms": ["Backup FAILED"]}


def test_status_cli_exit_codes(backup_env: dict[str, str], prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    sppg = [sys.executable, "-m", "sppg_backup", "status"]
    unhealthy = subprocess.run(sppg, env=env, capture_output=True, text=True)
    assert unhealthy.returncode == 1 and "ALERT backup_missing" in unhealthy.stderr
    backup_database()
    healthy = subprocess.run(sppg, env=env, capture_output=True, text=True)
    assert healthy.returncode == 0 and healthy.stdout.startswith("healthy")
