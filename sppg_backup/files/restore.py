"""Getting files back from a snapshot, and the versions of one file across snapshots."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sppg_backup import keys
from sppg_backup.errors import CheckFailed, PermanentError
from sppg_backup.files.blobs import BlobStore, file_sha256
from sppg_backup.files.snapshots import Node, Snapshot, SnapshotKind, list_snapshots, read_index, select, unsafe_path
from sppg_backup.forms import Choice, Text, WibTime
from sppg_backup.storage import Storage
from sppg_backup.stream.safe_tar import SETID


class RestoredFiles(BaseModel):
    model_config = ConfigDict(frozen=True)
    snapshot: str
    target: str
    files: int
    dirs: int
    symlinks: int
    bytes: int
    already_there: int = 0  # files identical in the target, left as they were


def restore(
    storage: Storage,
    snapshot: Snapshot,
    identities: list[Any],
    target: Path,
    prefix: str | None = None,
    overwrite: bool = False,
    keep_setid: bool = False,
) -> RestoredFiles:
    """Write the snapshot's files (at or below `prefix`) under `target` with their content, mode and mtime.

    Checked before anything is written: no existing file is in the way (unless `overwrite`), and the
    target's disk has room. Each file is written to a temporary name and renamed once its sha256 matched.
    """
    nodes = select(read_index(storage, snapshot, identities), prefix, snapshot.id)
    if not keep_setid:  # a file's setuid/setgid bits from storage are not trusted (a folder's setgid shares a group)
        nodes = [n.model_copy(update={"mode": n.mode & ~SETID}) if n.type == "file" else n for n in nodes]
    bad = [n.path for n in nodes if unsafe_path(n.path)]
    if bad:
        raise CheckFailed("index", f"snapshot {snapshot.id} names a path outside its root: {bad[0]!r}")
    if target.exists() and not target.is_dir():
        raise PermanentError(f"--target {target} is a file, not a folder; give the folder to restore into")
    target.mkdir(parents=True, exist_ok=True)
    there = {n.path for n in nodes if _already_there(target / n.path, n)}  # e.g. a retried run's first part
    in_the_way = [n.path for n in nodes if n.path not in there and os.path.lexists(target / n.path)]
    folders = [p for p in in_the_way if (target / p).is_dir() and not (target / p).is_symlink()]
    if in_the_way and not overwrite:
        raise PermanentError(
            f"{len(in_the_way)} files already exist in {target} (e.g. {in_the_way[0]}); "
            "restore into an empty folder, or pass --overwrite to replace them"
        )
    if folders:
        raise PermanentError(f"{target / folders[0]} is a folder where the snapshot has a file; move it away first")
    needed = sum(n.size for n in nodes if n.type == "file" and n.path not in there)
    free = shutil.disk_usage(target).free
    if needed > free:
        raise PermanentError(
            f"{target} has {free} bytes free, the files need {needed}; free space or restore elsewhere"
        )
    store = BlobStore(storage, keys.blobs(snapshot.kind), [])
    counts = {"file": 0, "dir": 0, "symlink": 0}
    root = target.resolve()
    for node in nodes:
        path = target / node.path
        if not path.parent.resolve().is_relative_to(root):  # a symlink in the target must not lead out of it
            raise PermanentError(f"{path.parent} leads outside {target} (a symlink); not writing {node.path}")
        if node.path in there:
            continue
        if node.type == "dir":
            if os.path.lexists(path):
                path.unlink()  # a file or symlink in the way, and --overwrite was given
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if node.type == "symlink":
                _replace_with_symlink(path, node)
            else:
                _write_file(store, node, path, identities)
        counts[node.type] += 1
    for node in reversed(nodes):  # folders last, deepest first: writing into a folder changes its mtime
        if node.type == "dir":
            os.chmod(target / node.path, node.mode, follow_symlinks=False)
            os.utime(target / node.path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
        elif node.path in there and node.type == "file":
            os.chmod(target / node.path, node.mode)
            os.utime(target / node.path, ns=(node.mtime_ns, node.mtime_ns))
    return RestoredFiles(
        snapshot=snapshot.id,
        target=str(target),
        files=counts["file"],
        dirs=counts["dir"],
        symlinks=counts["symlink"],
        bytes=needed,
        already_there=len([n for n in nodes if n.type == "file" and n.path in there]),
    )


def _already_there(path: Path, node: Node) -> bool:
    """Does the target hold exactly this node already (same folder, link target, or size and content)?"""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if node.type == "dir":
        return stat.S_ISDIR(info.st_mode)
    if node.type == "symlink":
        return stat.S_ISLNK(info.st_mode) and os.readlink(path) == node.target
    if not stat.S_ISREG(info.st_mode) or info.st_size != node.size:
        return False
    with open(path, "rb") as handle:
        return file_sha256(handle)[0] == node.sha256


def _write_file(store: BlobStore, node: Node, path: Path, identities: list[Any]) -> None:
    assert node.blob is not None and node.sha256 is not None
    temporary = path.with_name(f".{path.name}.sppg-{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "wb") as out:
            store.get(node.blob, out, identities, node.sha256)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, node.mode)
        os.utime(temporary, ns=(node.mtime_ns, node.mtime_ns))
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PermanentError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _replace_with_symlink(path: Path, node: Node) -> None:
    assert node.target is not None
    if os.path.lexists(path):
        path.unlink()
    os.symlink(node.target, path)
    os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)


class Version(BaseModel):
    """One content of a file, from the first snapshot that has it to the last."""

    model_config = ConfigDict(frozen=True)
    number: int
    sha256: str | None
    size: int
    mtime: datetime
    first_snapshot: str
    first_seen: datetime
    last_snapshot: str
    last_seen: datetime
    gone_in: str | None = None  # the snapshot where the path was deleted (or replaced by a folder)


def all_versions(snapshots: list[tuple[Snapshot, dict[str, Node]]]) -> dict[str, list[Version]]:
    """Every path's versions across snapshots (oldest first), in one pass: a new version starts when the
    content (or link target) changes. Runs of snapshots sharing one index (nothing changed) cost one step."""
    runs: list[tuple[Snapshot, Snapshot, dict[str, Node]]] = []
    for snapshot, nodes in snapshots:
        if runs and runs[-1][0].index_key == snapshot.index_key:
            runs[-1] = (runs[-1][0], snapshot, nodes)
        else:
            runs.append((snapshot, snapshot, nodes))
    found: dict[str, list[Version]] = {}
    open_: dict[str, list[Any]] = {}  # path -> [node, first snapshot, last snapshot] of its current version

    def close(path: str, gone_in: str | None = None) -> None:
        node, first, last = open_.pop(path)
        versions = found.setdefault(path, [])
        versions.append(
            Version(
                number=len(versions) + 1,
                sha256=node.sha256,
                size=node.size,
                mtime=datetime.fromtimestamp(node.mtime_ns / 1e9, UTC),
                first_snapshot=first.id,
                first_seen=first.created_at,
                last_snapshot=last.id,
                last_seen=last.created_at,
                gone_in=gone_in,
            )
        )

    for first, last, nodes in runs:
        for path in [p for p in open_ if p not in nodes or nodes[p].type == "dir"]:
            close(path, gone_in=first.id)
        for path, node in nodes.items():
            if node.type == "dir":
                continue
            current = open_.get(path)
            if current is not None and (current[0].type, current[0].sha256, current[0].target) == (
                node.type,
                node.sha256,
                node.target,
            ):
                current[2] = last
                continue
            if current is not None:
                close(path)
            open_[path] = [node, first, last]
    for path in list(open_):
        close(path)
    return found


def versions_of(snapshots: list[tuple[Snapshot, dict[str, Node]]], path: str) -> list[Version]:
    """The versions of one path."""
    only = [(s, {path: nodes[path]} if path in nodes else {}) for s, nodes in snapshots]
    return all_versions(only).get(path, [])


def load_all(storage: Storage, kind: SnapshotKind, identities: list[Any]) -> list[tuple[Snapshot, dict[str, Node]]]:
    """Every snapshot with its index (each distinct index read once), oldest first.

    An unreadable manifest is an error: leaving its snapshot out could make its files look unreferenced.
    """
    listing = list_snapshots(storage, kind)
    if listing.unreadable:
        key, problem = listing.unreadable[0]
        raise PermanentError(
            f"{len(listing.unreadable)} {kind} manifests cannot be read (e.g. {storage.describe(key)}: {problem}); "
            "nothing was pruned: fix or remove them first"
        )
    indexes: dict[str, dict[str, Node]] = {}
    result = []
    for snapshot in listing.snapshots:
        if snapshot.index_key not in indexes:
            indexes[snapshot.index_key] = {n.path: n for n in read_index(storage, snapshot, identities)}
        result.append((snapshot, indexes[snapshot.index_key]))
    return result


def history(storage: Storage, kind: SnapshotKind, identities: list[Any], path: str) -> list[Version]:
    found = versions_of(load_all(storage, kind, identities), path.strip("/"))
    if not found:
        raise PermanentError(
            f"no file {path.strip('/')!r} in any {kind} snapshot: give a file (not a folder), named relative to "
            f"the backed-up folder{' or APP_DIR' if kind == 'config' else ''}, e.g. "
            f"{'nginx/erp.conf' if kind == 'config' else '2024/12/01/invoice.pdf'}"
        )
    return found


class FilesRestoreRequest(BaseModel):
    """What the engineer fills in to get files back (the Prefect UI shows these fields as a form)."""

    model_config = ConfigDict(frozen=True)

    target: Text = Field(
        default=None,
        description="Required: the folder to restore into, e.g. /tmp/restored to look first, or the live folder "
        "(/opt/erp-sppg/uploads) with overwrite ticked. Nothing is written outside it.",
    )
    snapshot_id: Choice = Field(
        default=None,
        description="The snapshot to restore, chosen from the list (newest first: its time in WIB, files, size). "
        "'newest snapshot' takes the newest one, or the newest taken at or before 'as of'.",
    )
    as_of: WibTime = Field(
        default=None,
        description="Only with 'newest snapshot': the newest snapshot taken at or before this time, in WIB, e.g. "
        "2026-12-01 10:30. Leave empty for the newest of all.",
    )
    path: Text = Field(
        default=None,
        description="Only this file or folder, as inside the snapshot (e.g. 2024/12/01/invoice.pdf). Leave empty "
        "for everything.",
    )
    overwrite: bool = Field(
        default=False, description="Replace files that already exist in the target (otherwise they are kept)."
    )
