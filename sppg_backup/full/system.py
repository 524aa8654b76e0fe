"""The guide's full-system backup as one set with one manifest: database, application files, Docker images,
configuration. Each part streams to storage (tar and `docker save` output, zstd, age); the manifest is last.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sppg_backup import keys
from sppg_backup.claims import free_id, release_id
from sppg_backup.db.catalog import Manifest
from sppg_backup.errors import BackupError, CheckFailed, NotFoundError, PermanentError
from sppg_backup.files.snapshots import Snapshot
from sppg_backup.forms import Choice, DatabaseUrl, Text
from sppg_backup.storage import Storage, get_bytes, put_bytes
from sppg_backup.stream import pipes, safe_tar
from sppg_backup.stream.pack import Produced, download, opened, store_packed
from sppg_backup.stream.safe_tar import Unpacked


class Part(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    kind: Literal["database", "base", "application", "image", "config"]
    key: str | None = None  # stored object (application tar, image)
    ref: str | None = None  # the database backup or config snapshot it is
    size: int = 0
    sha256: str | None = None
    skipped: list[str] = []


class FullSet(BaseModel):
    """The manifest of a full-system backup; listed without keys."""

    model_config = ConfigDict(frozen=True)
    format_version: int = 1
    id: str
    kind: Literal["full"] = "full"
    status: Literal["complete"] = "complete"
    created_at: datetime
    finished_at: datetime
    duration_seconds: float
    app_dir: str | None
    images: list[str]
    parts: list[Part]
    encryption: Literal["age", "none"]
    created_by: dict[str, str] = {}
    taken_with: dict[str, Any] = {}  # the settings of the host it was taken on, secrets left out (settings.recorded)

    def part(self, kind: str) -> list[Part]:
        return [p for p in self.parts if p.kind == kind]


manifest_key = keys.full_manifest
part_key = keys.full_part


def reserve_id(storage: Storage, now: datetime) -> str:
    return free_id(storage, now, keys.full_id, manifest_key)


def _store(storage: Storage, key: str, source: IO[bytes], recipients: list[str]) -> tuple[int, str]:
    """Compress, encrypt and upload `source`; nothing is visible unless all of it arrived."""
    info = store_packed(storage, key, source, recipients)
    return info.size, info.sha256 or ""


def backup_application(storage: Storage, set_id: str, app_dir: Path, recipients: list[str]) -> Part:
    """A tar of APP_DIR (names relative to it); unreadable or vanished files are listed, the rest is kept."""
    if not app_dir.is_dir():
        raise PermanentError(f"bad setting SPPG_BACKUP_APP_DIR: {app_dir} is not a folder")
    skipped: list[str] = []

    def add_folder(tar: tarfile.TarFile, folder: Path) -> None:
        """Each folder's entries right after it, as GNU tar orders them (its mtime is then restored)."""
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(f"{folder.relative_to(app_dir)}: cannot list: {exc.strerror or exc}")
            return
        for entry in entries:
            path = Path(entry.path)
            problem = _add(tar, path, path.relative_to(app_dir).as_posix())
            if problem:
                skipped.append(f"{path.relative_to(app_dir)}: {problem}")
            elif entry.is_dir(follow_symlinks=False):
                add_folder(tar, path)

    def write_tar(sink: IO[bytes]) -> None:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            add_folder(tar, app_dir)

    key = part_key(set_id, "application", bool(recipients))
    with Produced(write_tar) as source:
        size, sha = _store(storage, key, source, recipients)  # type: ignore[arg-type]
    return Part(name="application", kind="application", key=key, size=size, sha256=sha, skipped=skipped)


def _add(tar: tarfile.TarFile, path: Path, name: str) -> str | None:
    """Add one entry with its mtime to the nanosecond (tarfile alone keeps a float); what went wrong, if anything.

    Nothing is written for an entry that cannot be read, so the archive stays valid; a file that shrinks
    while it is read is padded with zeros to its recorded size, as GNU tar does, and reported.
    """
    try:
        info = tar.gettarinfo(path, name)
        if info is None or not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
            return "not a regular file, folder or link; left out"
        nanoseconds = os.lstat(path).st_mtime_ns
        content = open(path, "rb") if info.isreg() else None  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return "vanished during the backup"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    info.pax_headers = {**info.pax_headers, "mtime": f"{nanoseconds // 10**9}.{nanoseconds % 10**9:09d}"}
    if content is None:
        tar.addfile(info)
        return None
    with content:
        exact = _Exactly(content, info.size)
        tar.addfile(info, exact)  # type: ignore[arg-type]
    return exact.problem


class _Exactly:
    """Reads exactly `size` bytes of a file that may change meanwhile: padded with zeros or cut short."""

    def __init__(self, source: IO[bytes], size: int) -> None:
        self.source, self.left = source, size
        self.problem: str | None = None

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        try:
            data = self.source.read(want)
        except OSError as exc:
            data, self.problem = b"", f"read failed ({exc.strerror}); the rest is zeros"
        if len(data) < want:
            self.problem = self.problem or "changed while being read (shrank); padded with zeros"
            data += b"\0" * (want - len(data))
        self.left -= len(data)
        return data


class _Chunks(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def find_image(client: Any, ref: str) -> Any:
    import docker

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise NotFoundError(
            f"image {ref} is not in the Docker engine; check SPPG_BACKUP_DOCKER_IMAGES (docker image ls)"
        ) from None


def backup_image(storage: Storage, set_id: str, client: Any, ref: str, recipients: list[str]) -> Part:
    """`docker save` of one image, streamed."""
    find_image(client, ref)
    key = part_key(set_id, f"image-{ref}", bool(recipients))
    saved = client.api.get_image(ref)  # by its name, so the archive carries this tag (not only the first one)
    size, sha = _store(storage, key, _Chunks(iter(saved)), recipients)  # type: ignore[arg-type]
    return Part(name=ref, kind="image", key=key, size=size, sha256=sha)


@dataclass(frozen=True)
class Taken:
    """What a full-system run has stored: the set's id and start, its database backup, its parts, its
    configuration snapshot, and what the settings named."""

    set_id: str
    started: datetime
    database: Manifest
    parts: list[Part]
    config: Snapshot | None
    app_dir: Path | None
    images: list[str]
    base: Manifest | None = None  # with point-in-time recovery: the base backup taken with the set
    settings: dict[str, Any] = field(default_factory=dict)  # what it was taken with, secrets left out


def assemble(taken: Taken, finished: datetime, encrypted: bool, created_by: dict[str, str]) -> FullSet:
    """The set's manifest: the database backup first, the parts, then the configuration snapshot."""
    everything = [Part(name="database", kind="database", ref=taken.database.id, size=taken.database.size)]
    if taken.base is not None:
        everything.append(Part(name="base", kind="base", ref=taken.base.id, size=taken.base.size))
    everything += taken.parts
    if taken.config is not None:
        everything.append(Part(name="config", kind="config", ref=taken.config.id, size=taken.config.bytes))
    return FullSet(
        id=taken.set_id,
        created_at=taken.started,
        finished_at=finished,
        duration_seconds=round((finished - taken.started).total_seconds(), 3),
        app_dir=str(taken.app_dir) if taken.app_dir else None,
        images=list(taken.images),
        parts=everything,
        encryption="age" if encrypted else "none",
        created_by=created_by,
        taken_with=taken.settings,
    )


def publish(storage: Storage, full: FullSet) -> None:
    put_bytes(storage, manifest_key(full.id), full.model_dump_json(indent=2).encode())
    release_id(storage, manifest_key(full.id))


def discard(storage: Storage, set_id: str) -> None:
    """Remove what a failed full backup stored (it was never listed)."""
    for obj in list(storage.list(keys.full_parts(set_id))):
        with contextlib.suppress(NotFoundError):
            storage.delete(obj.key)
    release_id(storage, manifest_key(set_id))


def list_sets(storage: Storage) -> tuple[list[FullSet], list[tuple[str, str]]]:
    sets, unreadable = [], []
    for obj in storage.list("full/" + keys.FULL_PREFIX):
        if obj.key.count("/") != 1 or not obj.key.endswith(".manifest.json"):
            continue
        try:
            sets.append(FullSet.model_validate_json(get_bytes(storage, obj.key)))
        except (ValidationError, ValueError, BackupError) as exc:
            unreadable.append((obj.key, str(exc).splitlines()[0]))
    return sorted(sets, key=lambda s: s.created_at), unreadable


def choose(storage: Storage, set_id: str | None) -> FullSet:
    if set_id:
        try:
            return FullSet.model_validate_json(get_bytes(storage, manifest_key(set_id)))
        except NotFoundError:
            raise NotFoundError(f"no full-system backup {set_id}; `sppg-backup list --kind full` shows them") from None
    sets, _ = list_sets(storage)
    if not sets:
        raise NotFoundError(f"no full-system backup in {storage.url}; make one with `sppg-backup backup full`")
    return sets[-1]


# --- recovery ---


def check_parts(storage: Storage, full: FullSet) -> None:
    """Every part of the set is in storage with its recorded size: the database backup and the config
    snapshot it names included (they live apart and could have been deleted by hand)."""
    from sppg_backup.db.catalog import read_manifest
    from sppg_backup.files.snapshots import manifest_key as snapshot_manifest

    missing = []
    for part in full.parts:
        try:
            if part.kind in ("database", "base") and part.ref:
                manifest = read_manifest(storage, "db" if part.kind == "database" else "base", part.ref)
                if storage.stat(manifest.data_key).size != manifest.size:
                    missing.append(f"{part.name} ({part.ref}: size differs from its manifest)")
            elif part.kind == "config" and part.ref:
                storage.stat(snapshot_manifest("config", part.ref))
            elif part.key and storage.stat(part.key).size != part.size:
                missing.append(f"{part.name} (size differs from the manifest)")
        except NotFoundError:
            missing.append(f"{part.name} ({part.ref or part.key})")
    if missing:
        raise CheckFailed("parts", f"full-system backup {full.id} is incomplete: missing {', '.join(missing)}")


def fetch(storage: Storage, part: Part, dest: Path) -> Path:
    """Download a part as stored and check its sha256 before anything is changed with it."""
    assert part.key is not None
    return download(storage, part.key, part.size, part.sha256 or "", dest, part.name)


def extract_application(stored: Path, identities: list[Any], target: Path, keep_setid: bool = False) -> Unpacked:
    """Unpack the application tar into `target`: checked whole first, nothing written outside `target`."""
    return safe_tar.extract(lambda: opened(stored, identities), target, "the application tar", keep_setid)


def wait_healthy(url: str, timeout: float) -> int:
    """Call the health URL until it answers 2xx; its status. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        if time.monotonic() > deadline:
            raise CheckFailed("health", f"{url} did not answer OK within {timeout:g} s ({problem})")
        time.sleep(1)


def load_image(stored: Path, identities: list[Any], client: Any, ref: str) -> str:
    """`docker load` from the decrypted stream; the image must come back under its name. Its id."""
    with opened(stored, identities) as source:
        loaded = client.images.load(iter(lambda: source.read(pipes.CHUNK), b""))
    for image in loaded:
        if ref in image.tags:
            return str(image.id)
    raise CheckFailed("docker load", f"docker load did not bring back {ref}")


class FullRestoreRequest(BaseModel):
    """The form for a full-system recovery in the Prefect UI."""

    model_config = ConfigDict(frozen=True)

    set_id: Choice = Field(
        default=None,
        description="The full-system backup to restore, chosen from the list (newest first: its time in WIB, "
        "size, parts). 'newest full-system backup' takes the newest one.",
    )
    confirm: bool = Field(
        default=False,
        description="Required: the application files, the Docker images and the database are replaced by the "
        "backup's. The current database is backed up first (see safety backup).",
    )
    app_dir: Text = Field(
        default=None,
        description="The folder the application files go to. Leave empty for SPPG_BACKUP_APP_DIR.",
    )
    target_url: DatabaseUrl = Field(
        default=None,
        description="The database to restore into, as postgresql://user@host:port/database. Leave empty for the "
        "production database (SPPG_BACKUP_DATABASE_URL).",
    )
    safety_backup: bool = Field(
        default=True,
        description="Back up the current database before it is replaced (when it has data), to go back to.",
    )
