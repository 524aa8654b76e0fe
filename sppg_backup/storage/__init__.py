"""Storage backends behind one interface; a URL picks the backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from sppg_backup.storage.base import ObjectInfo, Storage, Upload, get_bytes, put, put_bytes
from sppg_backup.storage.local import LocalStorage

__all__ = ["ObjectInfo", "Storage", "Upload", "get_bytes", "open_storage", "put", "put_bytes"]


def open_storage(url: str, credentials: Any = None, project: str | None = None) -> Storage:
    """file:///path -> LocalStorage, gs://bucket/prefix -> GcsStorage."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(unquote(parts.path))
    if parts.scheme == "gs":
        from sppg_backup.storage.gcs import GcsStorage, make_client

        return GcsStorage(url, make_client(credentials, project))
    raise ValueError(f"unsupported storage URL {url!r}: use file:///path or gs://bucket/prefix")
