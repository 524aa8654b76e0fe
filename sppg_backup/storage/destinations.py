"""Where backups go: the storage, and the local copy when it is another place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sppg_backup.settings import Settings
from sppg_backup.storage import Storage, open_storage
from sppg_backup.storage.local import LocalStorage


@dataclass(frozen=True)
class Destinations:
    """Where backups go: the configured storage (the truth), the optional local copy, and the replicas in
    another region that replicate keeps."""

    storage: Storage
    local: Storage | None
    replicas: tuple[Storage, ...] = ()

    @property
    def all(self) -> list[Storage]:
        return [self.storage] + ([self.local] if self.local is not None else [])


def open_destinations(settings: Settings, credentials: Any = None) -> Destinations:
    storage = open_storage(settings.storage_url, credentials, settings.gcp_project)
    local = LocalStorage(settings.local_dir) if settings.local_dir else None
    if local is not None and local.url.rstrip("/") == storage.url.rstrip("/"):
        local = None  # the storage already is this directory: one copy, not two of the same file
    replicas = tuple(open_storage(url, credentials, settings.gcp_project) for url in settings.replica_urls)
    return Destinations(storage, local, replicas)


def same_disk(storage: Storage, local: Storage | None) -> bool:
    """Both are directories on one filesystem: the local copy is then a hard link, not a second write."""
    if local is None or storage.folder is None or local.folder is None:
        return False
    try:
        for root in (storage.folder, local.folder):
            root.mkdir(parents=True, exist_ok=True)
        return storage.folder.stat().st_dev == local.folder.stat().st_dev
    except OSError:
        return False
