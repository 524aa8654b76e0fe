"""What people read: notification texts and the run summary, in WIB, with the next step to take."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from .catalog import Manifest, Verification, human_size, shown_time
from .drill import DrillReport
from .errors import CheckFailed
from .health import Alert
from .prune import PruneResult


def backup_succeeded(manifest: Manifest, where: str, zone: ZoneInfo) -> tuple[str, str]:
    title = f"Backup OK: {manifest.id}"
    body = (
        f"Database {manifest.source.database} on {manifest.source.host} was backed up at "
        f"{shown_time(manifest.created_at, zone)}.\n"
        f"Backup: {manifest.id}\nSize: {human_size(manifest.size)} ({manifest.size} bytes)\n"
        f"Duration: {manifest.duration_seconds:.1f} s\nTables: {len(manifest.tables)}, "
        f"rows: {sum(manifest.tables.values())}\nStored at: {where}\nsha256: {manifest.sha256}"
    )
    return title, body


def backup_failed(
    error: BaseException, database: str, storage_url: str, listed: Manifest | None = None
) -> tuple[str, str]:
    title = f"Backup FAILED: database {database}"
    outcome = (
        f"Backup {listed.id} itself was stored and verified; the step after it failed.\n"
        if listed
        else "No new backup was recorded; older backups were not touched.\n"
    )
    body = (
        f"The database backup failed: {error}\n{outcome}"
        f"Next step: fix the cause above, then run `sppg-backup backup db` (or retry the flow run in the "
        f"Prefect UI). Check the newest good backup with `sppg-backup list` (storage {storage_url})."
    )
    return title, body


def backup_markdown(manifest: Manifest, where: str, zone: ZoneInfo, pruned: list[PruneResult]) -> str:
    rows = "\n".join(f"| {name} | {count} |" for name, count in sorted(manifest.tables.items()))
    deleted = sum((p.deleted for p in pruned), [])
    return (
        f"# Backup {manifest.id}\n\n"
        f"| | |\n|---|---|\n"
        f"| database | {manifest.source.database} on {manifest.source.host}:{manifest.source.port} |\n"
        f"| created | {shown_time(manifest.created_at, zone)} |\n| duration | {manifest.duration_seconds:.1f} s |\n"
        f"| size | {human_size(manifest.size)} |\n| compression | {manifest.compression} |\n"
        f"| encryption | {manifest.encryption} ({len(manifest.recipients)} recipients) |\n"
        f"| stored at | {where} |\n| sha256 | `{manifest.sha256}` |\n"
        f"| pruned | {', '.join(deleted) if deleted else 'nothing'} |\n\n"
        f"## Rows per table at dump time\n\n| table | rows |\n|---|---|\n{rows}\n"
    )


NEXT_STEP = {
    "manifest": "the backup is incomplete; run `sppg-backup list` and verify the newest complete backup",
    "exists": "the backup data is gone from storage; check who deleted it (audit trail) and make a new backup",
    "size": "the stored file is damaged or the dump was empty; make a new backup (`sppg-backup backup db`) and "
    "check the database",
    "sha256": "the stored file is corrupt; do not restore it; make a new backup now and restore older ones only "
    "after they verify",
    "decrypt": "check SPPG_BACKUP_AGE_IDENTITY_FILE is the private key of a recipient in the manifest",
    "decompress": "the stored file is corrupt; make a new backup now",
    "pg_restore --list": "the archive is unreadable; make a new backup now and verify it",
    "test restore": "the backup does not restore; read the pg_restore error above, make a new backup and verify it",
    "row counts": "the restored data differs from what was dumped; make a new backup and verify it",
}


def verification_failed(backup_id: str, failure: CheckFailed, storage_url: str) -> tuple[str, str]:
    title = f"Backup verification FAILED ({failure.check}): {backup_id}"
    body = (
        f"Verification of backup {backup_id} failed at check '{failure.check}': {failure}\n"
        f"Next step: {NEXT_STEP.get(failure.check, 'read the error above and run `sppg-backup verify` again')}.\n"
        f"Storage: {storage_url}. Older verified backups: `sppg-backup list`."
    )
    return title, body


def verification_markdown(backup_id: str, result: Verification, zone: ZoneInfo) -> str:
    status = "PASSED" if result.status == "passed" else f"FAILED at check `{result.check}`"
    return (
        f"# Verification of {backup_id}: {status}\n\n| | |\n|---|---|\n"
        f"| checked | {shown_time(result.checked_at, zone)} |\n| duration | {result.duration_seconds:.1f} s |\n"
        f"| detail | {result.detail} |\n"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def drill_message(result: DrillReport, where: str, zone: ZoneInfo) -> tuple[str, str]:
    if result.status == "passed":
        title = f"Recovery drill OK: RTO {_seconds(result.rto_seconds)}, RPO {_seconds(result.rpo_seconds)}"
        next_step = "nothing; the report is the evidence for the monthly compliance check"
    else:
        title = f"Recovery drill FAILED ({result.failed_step}): backup {result.backup_id or '-'}"
        next_step = "fix the cause above; until then a restore of this backup may not work. Run `sppg-backup drill`"
    body = (
        f"Drill {result.id} at {shown_time(result.started_at, zone)} restored backup {result.backup_id or '-'}: "
        f"{result.status}.\n{result.detail}\nRTO (time to a checked database): {_seconds(result.rto_seconds)}; "
        f"RPO (age of the restored data): {_seconds(result.rpo_seconds)}.\nReport: {where}\nNext step: {next_step}."
    )
    return title, body


def drill_markdown(result: DrillReport, zone: ZoneInfo) -> str:
    steps = "\n".join(f"| {name} | {seconds:.1f} s |" for name, seconds in result.steps.items())
    checks = "\n".join(
        f"| {c.name} | `{c.sql}` | {c.expect} | {c.got} | {'ok' if c.passed else 'FAILED'} |"
        for c in result.smoke_checks
    )
    app = (
        f"\n\nApplication tests: `{result.app_test.command}` exited with {result.app_test.exit_code} "
        f"in {result.app_test.seconds:.1f} s"
        if result.app_test
        else ""
    )
    return (
        f"# Recovery drill {result.id}: {result.status.upper()}\n\n"
        f"| | |\n|---|---|\n| backup | {result.backup_id or '-'} |\n"
        f"| started | {shown_time(result.started_at, zone)} |\n| RTO | {_seconds(result.rto_seconds)} |\n"
        f"| RPO | {_seconds(result.rpo_seconds)} |\n| detail | {result.detail} |\n\n"
        f"## Steps\n\n| step | time |\n|---|---|\n{steps}\n\n"
        f"## Smoke checks\n\n| check | query | expected | got | |\n|---|---|---|---|---|\n{checks}{app}\n"
    )


ALERT_NEXT_STEP = {
    "backup_missing": "check the last backup-database flow run in the Prefect UI, fix its error and run "
    "`sppg-backup backup db`",
    "backup_size_drop": "check whether data was deleted from the database (audit logs, application errors) before "
    "the next backup overwrites the evidence; run `sppg-backup verify`",
    "verification_failed": "run `sppg-backup verify` to see the failing check; make a new backup and verify it",
}
STORAGE_NEXT_STEP = "free space or raise the quota; `sppg-backup prune --dry-run` shows what retention would remove"


def alert_started(alert: Alert, storage_url: str) -> tuple[str, str]:
    step = ALERT_NEXT_STEP.get(alert.name, STORAGE_NEXT_STEP)
    return f"ALERT {alert.name}: {alert.summary}", f"{alert.summary}\nStorage: {storage_url}\nNext step: {step}."


def alert_cleared(name: str) -> tuple[str, str]:
    return f"RESOLVED {name}", f"The alert {name} has cleared; backups are healthy on this point again."
