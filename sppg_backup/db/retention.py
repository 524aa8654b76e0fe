"""Pure retention policy: given backups and "now", which to keep and which to delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sppg_backup.db.catalog import Manifest


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_days: int


@dataclass(frozen=True)
class RetentionPlan:
    keep: list[Manifest]
    delete: list[Manifest]
    reasons: dict[str, str]


def plan(
    backups: list[Manifest], now: datetime, policy: RetentionPolicy, referenced: dict[str, str] | None = None
) -> RetentionPlan:
    """Delete backups older than the policy's age, but never the newest backup nor the newest verified one,
    nor one that `referenced` names (id -> why, e.g. the database of a full-system backup)."""
    cutoff = now - timedelta(days=policy.max_age_days)
    ordered = sorted(backups, key=lambda m: m.created_at)
    protected: dict[str, str] = dict(referenced or {})
    if ordered:
        protected[ordered[-1].id] = "newest backup"
    regular = [m for m in ordered if m.purpose == "backup"]
    if regular:
        protected.setdefault(regular[-1].id, "newest backup")
    verified = [m for m in ordered if m.verified]
    if verified:
        protected.setdefault(verified[-1].id, "newest verified backup")
    keep, delete, reasons = [], [], {}
    for manifest in ordered:
        if manifest.id in protected:
            keep.append(manifest)
            reasons[manifest.id] = protected[manifest.id]
        elif manifest.created_at < cutoff:
            delete.append(manifest)
            reasons[manifest.id] = f"older than {policy.max_age_days} days"
        else:
            keep.append(manifest)
            reasons[manifest.id] = f"within {policy.max_age_days} days"
    return RetentionPlan(keep, delete, reasons)
