"""gs:// backend on google-cloud-storage: resumable uploads, size and crc32c checked after each put."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import google_crc32c
import requests
from google.api_core import exceptions as gexc
from google.cloud import storage as gcs  # type: ignore[attr-defined]
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from sppg_backup.errors import NotFoundError, PermanentError, TransientError
from sppg_backup.storage.base import ObjectInfo, Storage, check_key, final_digest

UPLOAD_CHUNK = 16 << 20  # resumable upload chunk: a multiple of 256 KiB, held in memory while sent
PERMANENT = (gexc.Unauthorized, gexc.Forbidden, gexc.RequestRangeNotSatisfiable, gexc.BadRequest)


def make_client(credentials: Any = None, project: str | None = None) -> gcs.Client:
    """The one place a GCS client is made: emulator, given credentials, or application default."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project=project or "emulator", credentials=AnonymousCredentials())
    if credentials is not None:
        return gcs.Client(project=project or getattr(credentials, "project_id", None), credentials=credentials)
    try:
        return gcs.Client(project=project)
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise PermanentError(
            "no Google Cloud credentials: set SPPG_BACKUP_GCP_CREDENTIALS_BLOCK (a prefect-gcp GcpCredentials "
            f"block), SPPG_BACKUP_GCP_SERVICE_ACCOUNT_FILE, or application default credentials ({exc})"
        ) from None


def credentials_from_file(path: str) -> Any:
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_file(path)
    except (OSError, ValueError) as exc:
        raise PermanentError(f"cannot read service account key {path}: {exc}") from None


MEDIA_ERRORS: tuple[type[Exception], ...] = (InvalidResponse, DataCorruption)
CLIENT_ERRORS: tuple[type[Exception], ...] = (
    gexc.GoogleAPIError,
    requests.RequestException,
    ConnectionError,
    TimeoutError,
    *MEDIA_ERRORS,
)


def translate(exc: Exception, what: str, missing: str = "not found") -> Exception:
    """Map a client error to our kinds: 401/403/404/416 and bad requests are permanent."""
    if isinstance(exc, MEDIA_ERRORS):
        status = getattr(getattr(exc, "response", None), "status_code", None) or (exc.args[1:2] or [500])[0]
        exc = gexc.from_http_status(int(status), str(exc))
    if isinstance(exc, gexc.NotFound):
        return NotFoundError(f"{what}: {missing}")
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return PermanentError(f"{what}: access denied ({exc.code}); check the service account's bucket roles")
    if isinstance(exc, PERMANENT):
        return PermanentError(f"{what}: {exc}")
    return TransientError(f"{what}: {exc}")


class GcsUpload:
    def __init__(self, storage: GcsStorage, key: str, hashed: bool = True) -> None:
        self._storage = storage
        self._key = key
        self._blob = storage.bucket.blob(storage.name(key))
        self._what = storage.describe(key)
        self._missing = f"bucket {storage.bucket.name} does not exist"
        self._crc = google_crc32c.Checksum()
        self._sha = hashlib.sha256() if hashed else None
        self._size = 0
        self._writer = self._blob.open("wb", chunk_size=UPLOAD_CHUNK, ignore_flush=True)

    def write(self, data: bytes | memoryview) -> int:
        try:
            self._writer.write(data)
        except CLIENT_ERRORS as exc:
            self.abort()
            raise translate(exc, f"cannot upload {self._what}", self._missing) from exc
        self._crc.update(bytes(data))
        if self._sha is not None:
            self._sha.update(data)
        self._size += len(data)
        return len(data)

    def commit(self, sha256: str | None = None) -> ObjectInfo:
        digest = final_digest(self._sha, sha256)
        try:
            self._writer.close()
            self._blob.reload()
        except CLIENT_ERRORS as exc:
            self.abort()
            raise translate(exc, f"cannot upload {self._what}", self._missing) from exc
        expected = base64.b64encode(self._crc.digest()).decode()
        if self._blob.size != self._size or self._blob.crc32c != expected:
            self._storage.delete(self._key)
            raise PermanentError(
                f"{self._what}: stored object does not match what was sent "
                f"({self._blob.size} bytes crc32c {self._blob.crc32c}, sent {self._size} bytes crc32c {expected}); "
                "it was deleted"
            )
        self._blob.metadata = {"sha256": digest}
        try:
            self._blob.patch()
        except CLIENT_ERRORS as exc:
            self._storage.delete(self._key)
            raise translate(exc, f"cannot upload {self._what}") from exc
        return self._storage.info(self._key, self._blob)

    def abort(self) -> None:
        # An unfinished resumable upload is never visible and expires on its own.
        with contextlib.suppress(*CLIENT_ERRORS):
            self._writer.terminate()


class _Reading(io.RawIOBase):
    """A blob being read: a connection lost halfway is our TransientError, not the client library's own."""

    def __init__(self, reader: Any, what: str) -> None:
        self._reader, self._what = reader, what

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._reader.read(size)  # type: ignore[no-any-return]
        except CLIENT_ERRORS as exc:
            raise translate(exc, self._what) from exc

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._reader.close()
        super().close()


class GcsStorage:
    """A bucket and an optional prefix as object storage."""

    def __init__(self, url: str, client: gcs.Client) -> None:
        rest = url.removeprefix("gs://")
        bucket, _, prefix = rest.partition("/")
        self.url = url
        self.folder: Path | None = None
        self.client = client
        self.bucket = client.bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def name(self, key: str) -> str:
        """The one place object names are built from keys."""
        return self.prefix + check_key(key)

    def describe(self, key: str) -> str:
        return f"gs://{self.bucket.name}/{self.name(key)}"

    def info(self, key: str, blob: Any) -> ObjectInfo:
        updated = blob.updated or datetime.now(UTC)
        return ObjectInfo(key, int(blob.size or 0), updated, (blob.metadata or {}).get("sha256"))

    def open_write(self, key: str, hashed: bool = True) -> GcsUpload:
        return GcsUpload(self, key, hashed)

    def open_read(self, key: str) -> BinaryIO:
        blob = self.bucket.blob(self.name(key))
        try:
            blob.reload()
            reader = blob.open("rb", chunk_size=UPLOAD_CHUNK)
        except CLIENT_ERRORS as exc:
            raise translate(exc, f"cannot read {self.describe(key)}") from exc
        return _Reading(reader, f"cannot read {self.describe(key)}")  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo:
        blob = self.bucket.blob(self.name(key))
        try:
            blob.reload()
        except CLIENT_ERRORS as exc:
            raise translate(exc, f"cannot stat {self.describe(key)}") from exc
        return self.info(key, blob)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            for blob in self.client.list_blobs(self.bucket, prefix=self.prefix + prefix):
                yield self.info(blob.name[len(self.prefix) :], blob)
        except CLIENT_ERRORS as exc:
            raise translate(exc, f"cannot list gs://{self.bucket.name}/{self.prefix}{prefix}") from exc

    def link(self, source: Storage, key: str) -> ObjectInfo:
        raise PermanentError(f"cannot link {source.describe(key)} into {self.url}: a bucket has no hard links")

    def abandoned_uploads(self, remove: bool = False, prefix: str = "", grace: float = 10) -> tuple[str, ...]:
        return ()  # an unfinished resumable upload is never an object, and GCS expires it after a week

    def create(self, key: str, data: bytes) -> bool:
        blob = self.bucket.blob(self.name(key))
        try:
            # Generation 0 means "no live object": GCS refuses the second of two writers with 412.
            blob.upload_from_string(data, if_generation_match=0)
            return True
        except gexc.PreconditionFailed:
            return False
        except CLIENT_ERRORS as exc:
            raise translate(
                exc, f"cannot write {self.describe(key)}", f"bucket {self.bucket.name} does not exist"
            ) from exc

    def move(self, source: str, dest: str) -> None:
        """A server-side copy (metadata, so the sha256, included; the new generation replaces the old object at
        once), then the source deleted."""
        blob = self.bucket.blob(self.name(source))
        try:
            self.bucket.copy_blob(blob, self.bucket, self.name(dest))
            blob.delete()
        except CLIENT_ERRORS as exc:
            raise translate(exc, f"cannot move {self.describe(source)} to {self.describe(dest)}") from exc

    def delete(self, key: str) -> None:
        try:
            self.bucket.blob(self.name(key)).delete()
        except CLIENT_ERRORS as exc:
            raise translate(exc, f"cannot delete {self.describe(key)}") from exc
