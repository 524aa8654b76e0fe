"""WAL retention: the archive is kept back to the first segment the oldest kept base backup needs, no further.

Positions are compared across timelines (a segment name's last 16 hex digits): recovery from a base backup never
reads WAL from before its start, whatever the timeline, and timeline history files are always kept (tiny, and
the only way to follow a promotion).
"""

from __future__ import annotations

from sppg_backup import keys
from sppg_backup.db.catalog import Manifest
from sppg_backup.db.prune import PruneResult
from sppg_backup.ops.audit import AuditTrail
from sppg_backup.physical import wal
from sppg_backup.storage import Storage


def position(name: str) -> str | None:
    """The segment position a WAL file belongs to (None for a timeline history, which is never pruned)."""
    if name.endswith(".history"):
        return None
    return name[8:24]


def prune_wal(storage: Storage, kept: list[Manifest], audit: AuditTrail, dry_run: bool = False) -> PruneResult:
    """Delete the WAL no kept base backup needs; the list is in the audit trail before anything goes."""
    result = PruneResult(storage.url, kind="wal")
    starts = [m.physical.start_wal for m in kept if m.physical is not None]
    if not starts:
        result.reasons["wal"] = "no base backup is kept: the WAL archive is kept whole"
        return result
    first = min(starts, key=lambda name: name[8:])
    needed_from = first[8:]
    doomed: list[tuple[str, str]] = []
    for item in [*wal.archived(storage), *wal.partials(storage)]:
        at = position(item.name)
        if at is not None and at < needed_from:
            doomed.append((item.name, item.key))
        else:
            result.kept.append(item.name)
    result.deleted = sorted({name for name, _ in doomed})
    if doomed:
        result.reasons["wal"] = f"before {first}, the first segment the oldest kept base backup needs"
    if dry_run or not doomed:
        return result
    where = f"{storage.url.rstrip('/')}/{keys.WAL}"
    audit.record("prune.wal", first, "started", location=where, reason=result.reasons["wal"], names=result.deleted)
    for _, key in doomed:
        storage.delete(key)
    audit.record("prune.wal", first, "deleted", location=where, count=len(doomed))
    return result
