"""Database recovery: choose the backup, inspect the target, restore into a new database, check it, swap it in.

The live database is not touched until the restored copy has passed the row-count check.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sppg_backup.db import postgres, restore, scratch_db
from sppg_backup.db.catalog import Manifest, list_backups, read_manifest
from sppg_backup.display import shown_time
from sppg_backup.errors import CheckFailed, NotFoundError, PermanentError
from sppg_backup.forms import Choice, DatabaseUrl, WibTime
from sppg_backup.storage import Storage
from sppg_backup.stream.growing import GrowingFile


def choose_backup(
    storage: Storage, backup_id: str | None = None, before: datetime | None = None, verified_only: bool = False
) -> Manifest:
    """By id; else the newest before `before` (or the newest), skipping safety copies and failed verifications."""
    if backup_id:
        try:
            return read_manifest(storage, "db", backup_id)
        except NotFoundError:
            raise NotFoundError(f"no backup {backup_id} in {storage.url}; `sppg-backup list` shows them") from None
    candidates = [
        m
        for m in list_backups(storage).backups
        if m.purpose == "backup"
        and not (m.verification and m.verification.status == "failed")
        and (before is None or m.created_at < before)
        and (m.verified or not verified_only)
    ]
    if not candidates:
        when = f" made before {before.isoformat()}" if before else ""
        kind = "verified backup" if verified_only else "usable backup"
        raise NotFoundError(f"no {kind}{when} in {storage.url}; `sppg-backup list` shows them")
    return candidates[-1]


def choice_reason(backup_id: str | None, before: datetime | None, verified_only: bool, zone: object) -> str:
    """Why choose_backup picks what it picks, in the engineer's words."""
    if backup_id:
        return "named in the request"
    kind = "verified backup" if verified_only else "usable backup"
    when = f" made before {shown_time(before, zone)}" if before else ""  # type: ignore[arg-type]
    return f"the newest {kind}{when} (safety backups and backups that failed verification are skipped)"


class TargetState(BaseModel):
    model_config = ConfigDict(frozen=True)
    label: str
    database: str
    exists: bool
    connections: int = 0
    tables: int = 0


def inspect_target(url: str) -> TargetState:
    """Does the target database exist, and does anything use it or live in it?"""
    target, _ = postgres.parse(url)
    admin = postgres.with_database(url, "postgres")
    with postgres.connect(admin) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [target.database]).fetchone()
        exists = bool(row and row[0])
        connections = 0
        if exists:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [target.database],
            ).fetchone()
            connections = int(row[0]) if row else 0
    tables = 0
    if exists:
        with postgres.connect(url) as conn:
            tables = len(postgres.list_tables(conn))
    return TargetState(
        label=target.label, database=target.database, exists=exists, connections=connections, tables=tables
    )


class RestorePlan(BaseModel):
    """What a restore will do; printed by --dry-run, checked before anything changes."""

    model_config = ConfigDict(frozen=True)
    manifest: Manifest
    backup_id: str
    backup_created_at: datetime
    backup_verified: str
    backup_size: int
    target: TargetState
    services: list[str]
    safety_backup: bool
    needs_confirmation: bool
    reason: str = ""

    @property
    def target_state(self) -> str:
        target = self.target
        if not target.exists:
            return f"{target.label} does not exist yet; it is created"
        return f"{target.label}: {target.tables} tables, {target.connections} connections now"

    @property
    def confirmation(self) -> str:
        """Whether confirm is needed, and why."""
        if not self.needs_confirmation:
            return "not needed: the target " + (
                "does not exist yet" if not self.target.exists else "is empty and unused"
            )
        return (
            f"needed: {self.target.database} has {self.target.tables} tables and {self.target.connections} "
            "connections, and is replaced"
        )

    def describe(self, zone: object) -> list[str]:
        created = shown_time(self.backup_created_at, zone)  # type: ignore[arg-type]
        steps = [f"restore backup {self.backup_id} ({created}, {self.backup_verified}) into {self.target.label}"]
        if self.safety_backup:
            steps.append(f"take a safety backup of {self.target.database} first")
        if self.services:
            steps.append(f"stop {', '.join(self.services)} during the restore and start them again afterwards")
        steps.append(
            "download, check sha256, decrypt, decompress; pg_restore into a new database; compare every "
            "table's row count with the manifest; then swap it in for the old one"
        )
        return steps


def plan(
    manifest: Manifest, target: TargetState, services: list[str], safety_backup: bool, reason: str = ""
) -> RestorePlan:
    check = manifest.verification
    verified = f"verification {check.status}" if check else "not verified yet"
    return RestorePlan(
        manifest=manifest,
        backup_id=manifest.id,
        backup_created_at=manifest.created_at,
        backup_verified=verified,
        backup_size=manifest.size,
        target=target,
        services=services,
        safety_backup=safety_backup and target.exists and target.tables > 0,
        needs_confirmation=target.exists and (target.connections > 0 or target.tables > 0),
        reason=reason,
    )


def target_url(database_url: str, target: str | None, target_password: str | None) -> str:
    """The target's URL: DATABASE_URL when none is given; a target on the same server and login borrows its
    password, another one gets TARGET_PASSWORD (a password is never typed into a run's parameters)."""
    if not target:
        return database_url
    wanted, params = postgres.parse(target)
    known, known_params = postgres.parse(database_url)
    same_login = (wanted.host, wanted.port, wanted.user) == (known.host, known.port, known.user)
    if "password" not in params and same_login and known_params.get("password"):
        return postgres.with_database(database_url, wanted.database)
    if "password" not in params and target_password:
        return postgres.with_password(target, target_password)
    return target


def require_confirmation(plan: RestorePlan, confirmed: bool) -> None:
    """A target with data or connections is replaced only when the engineer said so."""
    if plan.needs_confirmation and not confirmed:
        raise CheckFailed(
            "confirmation",
            f"{plan.target.label} has {plan.target.tables} tables and "
            f"{plan.target.connections} connections; restoring over it needs --yes (confirm=true)",
        )


def restore_replacing(
    url: str, archive: Path, manifest: Manifest, pg_restore: str, jobs: int, keep_old: bool, grown: GrowingFile | None
) -> str | None:
    """Restore into a new database on the target's server, check its rows, then put it in the target's place.

    With `grown`, the restore starts while the archive is still being downloaded.

    Returns the name the old database was kept under (keep_old), else None (it was dropped).
    """
    target, _ = postgres.parse(url)
    name = target.database
    staging = f"{name[:40]}_restoring_{uuid.uuid4().hex[:8]}"
    admin = postgres.with_database(url, "postgres")
    restore.create_claimed(url, staging)
    staged = postgres.with_database(url, staging)
    try:
        restore.restore_archive(staged, archive, pg_restore, jobs, "restore", grown)
        restore.compare_rows(staged, manifest.tables)
    except BaseException:
        restore.drop_database(staged)
        raise
    old = f"{name[:40]}_replaced_{uuid.uuid4().hex[:8]}"
    with postgres.connect(admin) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{old}"')
        try:
            conn.execute(f'ALTER DATABASE "{staging}" RENAME TO "{name}"')
        except Exception as exc:
            if exists:
                conn.execute(f'ALTER DATABASE "{old}" RENAME TO "{name}"')
            restore.drop_database(staged)
            raise PermanentError(f"cannot put the restored database in place of {name}: {exc}") from None
        scratch_db.release(staging)  # it is the target now
        if exists and not keep_old:
            conn.execute(f'DROP DATABASE "{old}" WITH (FORCE)')
    return old if exists and keep_old else None


class RestoreRequest(BaseModel):
    """What to restore, and where. Times are WIB (Asia/Jakarta) unless they name their zone."""

    model_config = ConfigDict(frozen=True)

    backup_id: Choice = Field(
        default=None,
        description="The backup to restore, chosen from the list (newest first: its time in WIB, size, whether "
        "verification passed; SAFETY backups are the states saved before earlier restores). 'newest usable "
        "backup' takes the newest one that did not fail verification (made before 'before', if given).",
    )
    before: WibTime = Field(
        default=None,
        description="Only with 'newest usable backup': take the newest backup made before this time, in WIB, e.g. "
        "2026-12-01 10:30 (the second before a mistake). Leave empty for the newest of all.",
    )
    target_url: DatabaseUrl = Field(
        default=None,
        description="The database to restore into, as postgresql://user@host:port/database. Leave empty for the "
        "production database (SPPG_BACKUP_DATABASE_URL). The password is taken from the settings when the server "
        "and login match, so do not type it here.",
    )
    stop_services: list[str] = Field(
        default=[],
        description="Containers or Compose services (e.g. backend-1) to stop during the restore and start again "
        "afterwards. Leave empty for those in SPPG_BACKUP_SERVICES.",
    )
    keep_services_running: bool = Field(
        default=False,
        description="Stop no service at all (for example when they are stopped already).",
    )
    confirm: bool = Field(
        default=False,
        description="Tick to replace a database that has data or connections. Without it such a restore stops "
        "before changing anything; a dry run says whether it is needed.",
    )
    safety_backup: bool = Field(
        default=True,
        description="Back up the target as it is now before replacing it, to go back to if the restore was a "
        "mistake. Leave ticked.",
    )
    dry_run: bool = Field(
        default=False,
        description="Only show what would happen (which backup, what is replaced, whether confirm is needed); "
        "change nothing.",
    )

    def services(self, configured: list[str]) -> list[str]:
        """The services to stop: none when asked to keep them running, else those named, else `configured`."""
        if self.keep_services_running:
            return []
        return list(self.stop_services) or list(configured)
