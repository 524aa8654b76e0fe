"""GCS credentials from the settings: a prefect-gcp block, a key file, or none. No Prefect import until a block
is named, so commands that only read storage (wal push, wal fetch) start fast."""

from __future__ import annotations

from typing import Any

from sppg_backup.settings import Settings


def gcp_credentials(settings: Settings) -> Any:
    """For a gs:// storage: a prefect-gcp GcpCredentials block, else a key file, else None (application default
    or emulator)."""
    return credentials_for(settings, settings.storage_url)


def credentials_for(settings: Settings, url: str) -> Any:
    """The settings' credentials for the storage at `url` (another than theirs: recover server's)."""
    return google_credentials(settings) if url.startswith("gs://") else None


def google_credentials(settings: Settings) -> Any:
    """A prefect-gcp GcpCredentials block, else a key file, else None (application default credentials)."""
    if settings.gcp_credentials_block:
        from prefect_gcp import GcpCredentials

        block = GcpCredentials.load(settings.gcp_credentials_block)
        return block.get_credentials_from_service_account()
    if settings.gcp_service_account_file:
        from sppg_backup.storage.gcs import credentials_from_file

        return credentials_from_file(str(settings.gcp_service_account_file))
    return None
