"""Incremental, deduplicated snapshots of directories (uploads) and of named files and folders (config).

A snapshot is an index (every path with its type, size, mtime, mode and content hash; compressed and
encrypted, itself stored as a blob) and a small manifest beside it that `list` reads without any key. File
contents are blobs named by their sha256, stored once however many snapshots hold them. Unchanged files
are recognised by a local cache of the last snapshot (size, mtime, ctime, inode), so they are not read
again; without the cache every file is hashed, and only content storage lacks is uploaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sppg_backup import keys
from sppg_backup.claims import free_id, release_id
from sppg_backup.errors import BackupError, ConfigError, NotFoundError, PermanentError
from sppg_backup.files.blobs import BlobStore, ChangedWhileReading, file_sha256
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage, get_bytes, put_bytes

SnapshotKind = Literal["files", "config"]


class Node(BaseModel):
    """One path of a snapshot."""

    model_config = ConfigDict(frozen=True)
    path: str
    type: Literal["file", "dir", "symlink"]
    mode: int
    mtime_ns: int
    size: int = 0
    sha256: str | None = None
    blob: str | None = None
    target: str | None = None


class Skipped(BaseModel):
    model_config = ConfigDict(frozen=True)
    path: str
    reason: str


class Snapshot(BaseModel):
    """The manifest of one snapshot: readable without keys, written last."""

    model_config = ConfigDict(frozen=True)
    format_version: int = 1
    id: str
    kind: SnapshotKind
    status: Literal["complete"] = "complete"
    created_at: datetime
    finished_at: datetime
    duration_seconds: float
    sources: list[str]
    index_key: str
    index_sha256: str
    content_sha256: str  # the index without mtimes: equal when no content, name or mode changed
    files: int
    dirs: int
    symlinks: int
    bytes: int
    uploaded_blobs: int
    uploaded_bytes: int
    skipped: list[Skipped] = []
    encryption: Literal["age", "none"]
    recipients: list[str]
    created_by: dict[str, str] = {}
    part_of: str | None = None  # the full-system set this snapshot belongs to


LEASE_HOURS = 24  # a lease older than this belongs to a run that died


def lease_key(kind: SnapshotKind, snap_id: str) -> str:
    return keys.lease(kind, snap_id)


def running(storage: Storage, kind: SnapshotKind, now: datetime) -> bool:
    """Is a snapshot being taken (its blobs may not be referenced by any manifest yet)?"""
    return any(obj.updated > now - timedelta(hours=LEASE_HOURS) for obj in storage.list(keys.leases(kind)))


def snapshot_id(kind: SnapshotKind, now: datetime) -> str:
    return keys.snapshot_id(kind, now)


def manifest_key(kind: SnapshotKind, snap_id: str) -> str:
    return keys.manifest(kind, snap_id)


def reserve_id(storage: Storage, kind: SnapshotKind, now: datetime) -> str:
    return free_id(storage, now, lambda moment: snapshot_id(kind, moment), lambda i: manifest_key(kind, i))


@dataclass(frozen=True)
class Source:
    """A file or folder to snapshot, and the name it has inside the snapshot ('' for the root itself)."""

    path: Path
    name: str


def config_sources(paths: list[str], app_dir: Path | None) -> list[Source]:
    """Config paths are named relative to APP_DIR when inside it, else by their absolute path without '/'."""
    sources = []
    for raw in paths:
        path = Path(raw)
        if app_dir is not None and path.is_relative_to(app_dir):
            name = path.relative_to(app_dir).as_posix()
        else:
            name = path.as_posix().lstrip("/")
        sources.append(Source(path, "" if name == "." else name))
        if path.is_symlink():  # e.g. .env -> /etc/erp/.env: keep the link and what it points to
            real = path.resolve()
            sources.append(Source(real, real.as_posix().lstrip("/")))
    return sources


@dataclass
class _Cache:
    """What the last snapshot taken here found: lets unchanged files go unread. Storage stays the truth."""

    path: Path
    storage_url: str
    snapshot: str | None = None
    files: dict[str, list[Any]] = field(default_factory=dict)  # path -> [size, mtime_ns, ctime_ns, ino, sha, blob]
    known: set[str] = field(default_factory=set)  # blob and index keys that exist in storage

    @classmethod
    def load(cls, state_dir: Path, kind: SnapshotKind, storage: Storage) -> _Cache:
        path = state_dir / f"{kind}-cache.json"
        empty = cls(path, storage.url)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return empty
        if data.get("storage_url") != storage.url or not data.get("snapshot"):
            return empty
        try:  # the snapshot it describes still exists, so every blob it names does too
            storage.stat(manifest_key(kind, data["snapshot"]))
        except NotFoundError:
            return empty
        return cls(path, storage.url, data["snapshot"], data.get("files", {}), set(data.get("known", [])))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")  # runs may overlap
        body = {"storage_url": self.storage_url, "snapshot": self.snapshot, "files": self.files}
        temporary.write_text(json.dumps({**body, "known": sorted(self.known)}))
        temporary.chmod(0o600)
        os.replace(temporary, self.path)


def _walk(source: Source, skipped: list[Skipped], top: bool = True) -> Iterator[tuple[str, Path, os.stat_result]]:
    """(name, path, lstat) of the source and everything below it, in name order; never follows symlinks."""
    try:
        info = os.lstat(source.path)
    except FileNotFoundError:
        reason = "does not exist" if top else "vanished during the snapshot"
        skipped.append(Skipped(path=source.name or str(source.path), reason=reason))
        return
    if source.name:
        yield source.name, source.path, info
    if not stat.S_ISDIR(info.st_mode):
        return
    try:
        with os.scandir(source.path) as listing:
            children = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        skipped.append(Skipped(path=source.name or ".", reason=f"cannot list: {exc.strerror}"))
        return
    for child in children:
        name = f"{source.name}/{child.name}" if source.name else child.name
        yield from _walk(Source(Path(child.path), name), skipped, top=False)


@dataclass
class _Totals:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    uploaded_blobs: int = 0
    uploaded_bytes: int = 0


def take(
    storage: Storage,
    kind: SnapshotKind,
    sources: list[Source],
    recipients: list[str],
    state_dir: Path,
    snap_id: str,
    created_by: dict[str, str] | None = None,
    only_if_changed: bool = False,
    part_of: str | None = None,
) -> Snapshot | None:
    """Snapshot `sources`; upload only content storage lacks; write the manifest last.

    With only_if_changed, nothing is written (None is returned) when names, contents and modes are those of
    the newest snapshot of this kind.
    """
    started = datetime.now(UTC)
    put_bytes(storage, lease_key(kind, snap_id), b"")  # prune leaves unreferenced blobs alone meanwhile
    try:
        return _take(
            storage, kind, sources, recipients, state_dir, snap_id, started, created_by, only_if_changed, part_of
        )
    finally:
        with contextlib.suppress(NotFoundError):
            storage.delete(lease_key(kind, snap_id))
        release_id(storage, manifest_key(kind, snap_id))


def _take(
    storage: Storage,
    kind: SnapshotKind,
    sources: list[Source],
    recipients: list[str],
    state_dir: Path,
    snap_id: str,
    started: datetime,
    created_by: dict[str, str] | None,
    only_if_changed: bool,
    part_of: str | None,
) -> Snapshot | None:
    cache = _Cache.load(state_dir, kind, storage)
    store = BlobStore(storage, keys.blobs(kind), recipients)
    nodes: list[Node] = []
    skipped: list[Skipped] = []
    totals = _Totals()
    files: dict[str, list[Any]] = {}
    seen: set[str] = set()
    for source in sources:
        for name, path, info in _walk(source, skipped):
            if name in seen:  # named twice (a folder and a file in it): once is enough
                continue
            seen.add(name)
            node = _node(name, path, info, store, cache, skipped, totals, files)
            if node is not None:
                nodes.append(node)
    if totals.files == 0:
        _refuse_if_everything_went(storage, kind, cache, sources)
    index = "".join(n.model_dump_json(exclude_none=True) + "\n" for n in nodes).encode()
    content = "".join(
        n.model_dump_json(exclude_none=True, exclude={"mtime_ns"}) + "\n" for n in nodes if n.type != "dir"
    ).encode()
    content_sha = hashlib.sha256(content).hexdigest()
    if only_if_changed:
        newest = newest_snapshot(storage, kind)
        if newest is not None and newest.content_sha256 == content_sha and newest.skipped == skipped:
            return None  # also when the same file is still unreadable: one snapshot says so, not one per run
    index_sha = hashlib.sha256(index).hexdigest()
    indexes = BlobStore(storage, keys.indexes(kind), recipients)
    index_key = indexes.key(index_sha)
    if index_key not in cache.known and not indexes.exists(index_key):
        indexes.put(io.BytesIO(index), index_sha)
    finished = datetime.now(UTC)
    snapshot = Snapshot(
        id=snap_id,
        kind=kind,
        created_at=started,
        finished_at=finished,
        duration_seconds=round((finished - started).total_seconds(), 3),
        sources=[str(s.path) for s in sources],
        index_key=index_key,
        index_sha256=index_sha,
        content_sha256=content_sha,
        files=totals.files,
        dirs=totals.dirs,
        symlinks=totals.symlinks,
        bytes=totals.bytes,
        uploaded_blobs=totals.uploaded_blobs,
        uploaded_bytes=totals.uploaded_bytes,
        skipped=skipped,
        encryption="age" if recipients else "none",
        recipients=recipients,
        created_by=created_by or {},
        part_of=part_of,
    )
    put_bytes(storage, manifest_key(kind, snap_id), snapshot.model_dump_json(indent=2).encode())
    cache.snapshot, cache.files = snap_id, files
    cache.known = {f[5] for f in files.values()} | {index_key}
    cache.save()
    return snapshot


def _refuse_if_everything_went(storage: Storage, kind: SnapshotKind, cache: _Cache, sources: list[Source]) -> None:
    """No file at all where the last snapshot had some is far likelier an unmounted volume than a real deletion;
    an empty snapshot would become the newest one, the one a restore picks."""
    before = len(cache.files) if cache.snapshot else None
    if before is None:
        newest = newest_snapshot(storage, kind)
        before = newest.files if newest else 0
    if before:
        where = ", ".join(str(s.path) for s in sources)
        raise PermanentError(
            f"{where} holds no files, but the last {kind} snapshot had {before}: is the volume mounted? "
            "No snapshot was taken (remove the old snapshots by hand if the files were really all deleted)"
        )


def _node(
    name: str,
    path: Path,
    info: os.stat_result,
    store: BlobStore,
    cache: _Cache,
    skipped: list[Skipped],
    totals: _Totals,
    files: dict[str, list[Any]],
) -> Node | None:
    mode, mtime = stat.S_IMODE(info.st_mode), info.st_mtime_ns
    if stat.S_ISDIR(info.st_mode):
        totals.dirs += 1
        return Node(path=name, type="dir", mode=mode, mtime_ns=mtime)
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            skipped.append(Skipped(path=name, reason="vanished during the snapshot"))
            return None
        totals.symlinks += 1
        return Node(path=name, type="symlink", mode=mode, mtime_ns=mtime, target=target)
    if not stat.S_ISREG(info.st_mode):
        skipped.append(Skipped(path=name, reason="not a regular file, folder or symlink"))
        return None
    stamp = [info.st_size, mtime, info.st_ctime_ns, info.st_ino]
    cached = cache.files.get(name)
    try:
        if cached and cached[:4] == stamp and cached[5] in cache.known:
            sha, size, key = cached[4], info.st_size, cached[5]
        else:
            sha, size, key = _store(path, store, cache, totals)
    except FileNotFoundError:
        skipped.append(Skipped(path=name, reason="vanished during the snapshot"))
        return None
    except (ChangedWhileReading, OSError) as exc:
        reason = "changed while being read" if isinstance(exc, ChangedWhileReading) else "cannot read"
        if isinstance(exc, OSError):
            reason += f": {exc.strerror or exc}"
        if not (cached and cached[5] in cache.known):
            skipped.append(Skipped(path=name, reason=reason))
            return None
        # Its last good version stays in this snapshot: a passing problem is not a deletion.
        skipped.append(Skipped(path=name, reason=reason + "; its previous version is kept"))
        stamp, sha, size, key, mtime = cached[:4], cached[4], cached[0], cached[5], cached[1]
    files[name] = [*stamp, sha, key]
    totals.files += 1
    totals.bytes += size
    return Node(path=name, type="file", mode=mode, mtime_ns=mtime, size=size, sha256=sha, blob=key)


def _store(path: Path, store: BlobStore, cache: _Cache, totals: _Totals) -> tuple[str, int, str]:
    """Hash the file; upload it when storage lacks that content. Reads it twice only when it is new."""
    with open(path, "rb") as handle:
        sha, size = file_sha256(handle)
        key = store.key(sha)
        if key in cache.known or store.exists(key):
            return sha, size, key
        handle.seek(0)
        _, stored = store.put(handle, sha)
    cache.known.add(key)
    totals.uploaded_blobs += 1
    totals.uploaded_bytes += stored
    return sha, size, key


# --- reading snapshots back ---


@dataclass
class SnapshotListing:
    snapshots: list[Snapshot] = field(default_factory=list)  # oldest first
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def list_snapshots(storage: Storage, kind: SnapshotKind, newest: int | None = None) -> SnapshotListing:
    """Every manifest of this kind (or the `newest` ones), read 8 at a time (one GET each); blobs and indexes are
    not listed."""
    listing = SnapshotListing()
    names = sorted(
        obj.key
        for obj in storage.list(keys.snapshot_prefix(kind))
        if "/" not in obj.key[len(kind) + 1 :] and obj.key.endswith(keys.MANIFEST_SUFFIX)
    )
    names = names[-newest:] if newest else names

    def read(key: str) -> Snapshot | tuple[str, str]:
        try:
            return Snapshot.model_validate_json(get_bytes(storage, key))
        except (ValidationError, ValueError, BackupError) as exc:
            return key, str(exc).splitlines()[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for result in pool.map(read, names):
            if isinstance(result, Snapshot):
                listing.snapshots.append(result)
            else:
                listing.unreadable.append(result)
    listing.snapshots.sort(key=lambda s: s.created_at)
    return listing


def newest_time(storage: Storage, kind: SnapshotKind) -> datetime | None:
    """When the newest snapshot of this kind was taken, from the manifest names alone (no GET per snapshot)."""
    prefix = keys.snapshot_prefix(kind)
    stamps = [
        obj.key[len(prefix) : -len(keys.MANIFEST_SUFFIX)]
        for obj in storage.list(prefix)
        if "/" not in obj.key[len(kind) + 1 :] and obj.key.endswith(keys.MANIFEST_SUFFIX)
    ]
    newest = max(stamps, default=None)
    return datetime.strptime(newest, "%Y%m%d_%H%M%S").replace(tzinfo=UTC) if newest else None


def newest_snapshot(storage: Storage, kind: SnapshotKind) -> Snapshot | None:
    snapshots = list_snapshots(storage, kind).snapshots
    return snapshots[-1] if snapshots else None


def choose(storage: Storage, kind: SnapshotKind, snap_id: str | None = None, as_of: datetime | None = None) -> Snapshot:
    """By id; else the newest taken at or before `as_of`; else the newest."""
    if snap_id:
        try:
            return Snapshot.model_validate_json(get_bytes(storage, manifest_key(kind, snap_id)))
        except NotFoundError:
            raise NotFoundError(
                f"no {kind} snapshot {snap_id} in {storage.url}; `sppg-backup list --kind {kind}`"
            ) from None
    candidates = [s for s in list_snapshots(storage, kind).snapshots if as_of is None or s.created_at <= as_of]
    if not candidates:
        when = f" taken at or before {as_of.isoformat()}" if as_of else ""
        raise NotFoundError(f"no {kind} snapshot{when} in {storage.url}; `sppg-backup list --kind {kind}`")
    return candidates[-1]


def read_index(storage: Storage, snapshot: Snapshot, identities: list[Any]) -> list[Node]:
    store = BlobStore(storage, keys.indexes(snapshot.kind), [])
    buffer = _Collect()
    store.get(snapshot.index_key, buffer, identities, snapshot.index_sha256)
    return [Node.model_validate_json(line) for line in buffer.data().splitlines() if line]


class _Collect:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def data(self) -> bytes:
        return b"".join(self._parts)


def select(nodes: list[Node], prefix: str | None, snapshot: str = "the snapshot") -> list[Node]:
    """The nodes at or below `prefix` (a path inside the snapshot); all of them without one."""
    if not prefix:
        return nodes
    wanted = prefix.strip("/")
    chosen = [n for n in nodes if n.path == wanted or n.path.startswith(wanted + "/")]
    if not chosen:
        raise NotFoundError(
            f"no path {wanted!r} in {snapshot}: paths are relative to the backed-up folder "
            "(e.g. 2024/12/01/invoice.pdf); `sppg-backup history PATH` shows which snapshots hold a file"
        )
    return chosen


def unsafe_path(path: str) -> bool:
    parts = path.split("/")
    return not path or path.startswith("/") or "\0" in path or any(p in ("", ".", "..") for p in parts)


def sources(settings: Settings, kind: SnapshotKind) -> list[Source]:
    """What a snapshot of `kind` reads: CONFIG_PATHS (names inside APP_DIR kept relative), or UPLOADS_DIR."""
    if kind == "config":
        if not settings.config_paths:
            raise ConfigError("bad setting SPPG_BACKUP_CONFIG_PATHS: empty; name the files and folders to keep")
        return config_sources(settings.config_paths, settings.app_dir)
    if settings.uploads_dir is None or not settings.uploads_dir.is_dir():
        raise ConfigError(f"bad setting SPPG_BACKUP_UPLOADS_DIR: {settings.uploads_dir or '(empty)'} is not a folder")
    return [Source(settings.uploads_dir, "")]
