"""Prune: apply retention to local copies and storage, never touching the newest good backup."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sppg_backup.db import retention
from sppg_backup.db.catalog import Kind, delete_backup, list_backups
from sppg_backup.errors import NotFoundError
from sppg_backup.full import system
from sppg_backup.ops.audit import AuditTrail
from sppg_backup.storage import Storage


@dataclass
class PruneResult:
    location: str
    kind: str = "db"  # db, base or wal
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def prune(
    storage: Storage,
    policy: retention.RetentionPolicy,
    now: datetime,
    audit: AuditTrail,
    dry_run: bool = False,
    kind: Kind = "db",
) -> PruneResult:
    """Delete what the policy says to delete; each deletion is written to the audit trail first."""
    listing = list_backups(storage, (kind,))
    full_sets, _ = system.list_sets(storage)
    part = "base" if kind == "base" else "database"
    referenced = {p.ref: f"the {p.kind} of full-system backup {s.id}" for s in full_sets for p in s.part(part) if p.ref}
    decision = retention.plan(listing.backups, now, policy, referenced)
    result = PruneResult(storage.url, kind, kept=[m.id for m in decision.keep], reasons=decision.reasons)
    for manifest in decision.delete:
        result.deleted.append(manifest.id)
        if dry_run:
            continue
        where = storage.describe(manifest.data_key)
        audit.record(
            "prune.delete",
            manifest.id,
            "started",
            location=where,
            reason=decision.reasons[manifest.id],
            created_at=manifest.created_at.isoformat(),
        )
        delete_backup(storage, kind, manifest.id, manifest.data_key)
        audit.record("prune.delete", manifest.id, "deleted", location=where)
    # Data without a manifest (an upload whose run failed) is not a backup; it goes once past retention too.
    cutoff = now - timedelta(days=policy.max_age_days)
    for key in listing.orphans:
        if listing.orphan_times[key] < cutoff:
            result.deleted.append(key)
            result.reasons[key] = f"incomplete (no manifest), older than {policy.max_age_days} days"
            if not dry_run:
                audited_delete(storage, key, key, result.reasons[key], audit)
    return result


def audited_delete(storage: Storage, key: str, target: str, reason: str, audit: AuditTrail) -> None:
    """Delete one object, written to the audit trail before (and after) it happens."""
    where = storage.describe(key)
    audit.record("prune.delete", target, "started", location=where, reason=reason)
    with contextlib.suppress(NotFoundError):
        storage.delete(key)
    audit.record("prune.delete", target, "deleted", location=where)
