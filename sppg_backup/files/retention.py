"""Retention for file snapshots, as the guide's bucket lifecycle: delete after 90 days, keep 5 versions.

A version of a file goes only when it is past FILES_RETENTION_DAYS *and* FILES_KEEP_VERSIONS newer versions
of it exist. A snapshot past retention stays while it is the last one holding a version that must stay.
Blobs and indexes no kept snapshot names are deleted afterwards (only once older than `grace`, so the
uploads of a snapshot being taken right now are safe).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sppg_backup import keys
from sppg_backup.db.prune import audited_delete
from sppg_backup.files import snapshots
from sppg_backup.files.restore import all_versions, load_all
from sppg_backup.files.snapshots import Node, Snapshot, SnapshotKind, manifest_key
from sppg_backup.ops.audit import AuditTrail
from sppg_backup.storage import Storage


@dataclass
class SnapshotPlan:
    keep: list[Snapshot] = field(default_factory=list)
    delete: list[Snapshot] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def plan(loaded: list[tuple[Snapshot, dict[str, Node]]], now: datetime, days: int, keep_versions: int) -> SnapshotPlan:
    cutoff = now - timedelta(days=days)
    keep_ids = {s.id for s, _ in loaded if s.created_at >= cutoff}
    if loaded:
        keep_ids.add(loaded[-1][0].id)  # the newest snapshot always stays
    reasons = {i: f"newer than {days} days or the newest" for i in keep_ids}
    position = {s.id: i for i, (s, _) in enumerate(loaded)}
    kept_at = sorted(position[i] for i in keep_ids)
    for path, history in sorted(all_versions(loaded).items()):
        for number, version in enumerate(history, start=1):
            newer = len(history) - number
            if version.first_seen < cutoff and newer >= keep_versions:
                continue  # past retention with enough newer versions: this version may go
            # Every snapshot from its first to its last holds this version: is one of them kept?
            start, end = position[version.first_snapshot], position[version.last_snapshot]
            at = bisect.bisect_left(kept_at, start)
            if at == len(kept_at) or kept_at[at] > end:
                keep_ids.add(version.last_snapshot)
                bisect.insort(kept_at, end)
                reasons[version.last_snapshot] = f"holds version {number} of {path}"
    result = SnapshotPlan(reasons=reasons)
    for snapshot, _ in loaded:
        (result.keep if snapshot.id in keep_ids else result.delete).append(snapshot)
    return result


@dataclass
class SnapshotPruneResult:
    kind: SnapshotKind
    deleted_snapshots: list[str] = field(default_factory=list)
    kept_snapshots: list[str] = field(default_factory=list)
    deleted_objects: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def prune(
    storage: Storage,
    kind: SnapshotKind,
    identities: list[Any],
    now: datetime,
    days: int,
    keep_versions: int,
    audit: AuditTrail,
    dry_run: bool = False,
    grace: timedelta = timedelta(hours=6),
) -> SnapshotPruneResult:
    """Delete expired snapshots, then blobs and indexes no kept snapshot refers to; audited first."""
    loaded = load_all(storage, kind, identities)
    decision = plan(loaded, now, days, keep_versions)
    result = SnapshotPruneResult(kind, kept_snapshots=[s.id for s in decision.keep], reasons=decision.reasons)
    for snapshot in decision.delete:
        result.deleted_snapshots.append(snapshot.id)
        result.reasons[snapshot.id] = f"older than {days} days; its versions are in newer snapshots or expired"
        _delete(storage, manifest_key(kind, snapshot.id), snapshot.id, result.reasons[snapshot.id], audit, dry_run)
    if snapshots.running(storage, kind, now):
        result.reasons["blobs"] = "a snapshot is being taken: unreferenced blobs are left for the next prune"
        return result  # its blobs are not referenced by any manifest yet
    kept = {s.id for s in decision.keep}
    needed = {s.index_key for s, _ in loaded if s.id in kept}
    needed |= {n.blob for s, nodes in loaded if s.id in kept for n in nodes.values() if n.blob}
    for prefix in (keys.blobs(kind) + "/", keys.indexes(kind) + "/"):
        for obj in list(storage.list(prefix)):
            if obj.key not in needed and obj.updated < now - grace:
                result.deleted_objects.append(obj.key)
                _delete(storage, obj.key, obj.key, "no kept snapshot refers to it", audit, dry_run)
    return result


def _delete(storage: Storage, key: str, target: str, reason: str, audit: AuditTrail, dry_run: bool) -> None:
    if not dry_run:
        audited_delete(storage, key, target, reason, audit)
