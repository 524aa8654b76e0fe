"""GCS credentials in the order a Prefect user expects: GcpCredentials block, key file, application default.

The real Google Cloud cannot be reached here, so these tests stop at the credentials object the client gets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sppg_backup.settings import load_settings
from sppg_backup.storage.gcs import make_client
from sppg_backup.tasks.credentials import gcp_credentials

pytestmark = pytest.mark.integration


def service_account(email: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "type": "service_account",
        "project_id": "erp-sppg",
        "private_key_id": "1",
        "private_key": pem.decode(),
        "client_email": email,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account("file@erp-sppg.iam.gserviceaccount.com")))
    return path


def test_block_wins_over_key_file(prefect_api: str, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_gcp import GcpCredentials

    GcpCredentials(service_account_info=service_account("block@erp-sppg.iam.gserviceaccount.com")).save(
        "erp-sppg-backups", overwrite=True
    )
    settings = load_settings(
        storage_url="gs://bucket/backups", gcp_credentials_block="erp-sppg-backups", gcp_service_account_file=key_file
    )
    credentials = gcp_credentials(settings)
    assert credentials.service_account_email == "block@erp-sppg.iam.gserviceaccount.com"

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    client = make_client(credentials)
    assert client._credentials is credentials and client.project == "erp-sppg"


def test_key_file_when_no_block(key_file: Path) -> None:
    settings = load_settings(storage_url="gs://bucket/backups", gcp_service_account_file=key_file)
    assert gcp_credentials(settings).service_account_email == "file@erp-sppg.iam.gserviceaccount.com"


def test_application_default_when_neither(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert gcp_credentials(load_settings(storage_url="gs://bucket/backups")) is None
    assert gcp_credentials(load_settings(storage_url="file:///tmp/x", gcp_credentials_block="unused")) is None
    # with no application default credentials either, the error says what to set
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    from sppg_backup.errors import PermanentError

    with pytest.raises(PermanentError, match="SPPG_BACKUP_GCP_CREDENTIALS_BLOCK"):
        make_client()


def test_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    from sppg_backup.errors import PermanentError

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(PermanentError, match="cannot read service account key"):
        gcp_credentials(load_settings(storage_url="gs://b/p", gcp_service_account_file=bad))
