"""What people read: one Report per outcome, shown as the run's artifact, sent as the notification and printed by
the CLI; in WIB, with the next step to take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sppg_backup.db.catalog import Manifest, Verification
from sppg_backup.db.drill import DrillReport
from sppg_backup.db.prune import PruneResult
from sppg_backup.db.recovery import RestorePlan
from sppg_backup.display import human_size, shown_time
from sppg_backup.errors import CheckFailed
from sppg_backup.ops.health import Alert


@dataclass(frozen=True)
class Report:
    """An outcome told once, in words an engineer can follow at 3 am."""

    title: str
    ok: bool
    summary: str
    facts: tuple[tuple[str, str], ...] = ()
    next_step: str = ""
    details: str = ""  # more markdown (tables), for the artifact only
    severity: str | None = None  # who is told (ops/notify.py): default info when ok, else critical

    def text(self) -> str:
        """The notification's body and what the CLI prints."""
        lines = [self.summary, *(f"{name[:1].upper()}{name[1:]}: {value}" for name, value in self.facts)]
        if self.next_step:
            lines.append(f"Next step: {self.next_step}")
        return "\n".join(lines)

    def markdown(self) -> str:
        rows = "".join(f"| {name} | {_cell(value)} |\n" for name, value in self.facts)
        table = f"| | |\n|---|---|\n{rows}\n" if rows else ""
        step = f"**Next step:** {self.next_step}\n\n" if self.next_step else ""
        return f"# {self.title}\n\n{self.summary}\n\n{table}{step}{self.details}".rstrip() + "\n"


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", "<br>")


def backup_succeeded(manifest: Manifest, where: str, zone: ZoneInfo, pruned: list[PruneResult]) -> Report:
    rows = "\n".join(f"| {name} | {count} |" for name, count in sorted(manifest.tables.items()))
    deleted = sum((p.deleted for p in pruned), [])
    return Report(
        title=f"Backup OK: {manifest.id}",
        ok=True,
        summary=f"Database {manifest.source.database} on {manifest.source.host} was backed up at "
        f"{shown_time(manifest.created_at, zone)}.",
        facts=(
            ("backup", manifest.id),
            ("database", f"{manifest.source.database} on {manifest.source.host}:{manifest.source.port}"),
            ("size", f"{human_size(manifest.size)} ({manifest.size} bytes)"),
            ("duration", f"{manifest.duration_seconds:.1f} s"),
            ("tables", f"{len(manifest.tables)}, rows: {sum(manifest.tables.values())}"),
            ("compression", manifest.compression),
            ("encryption", f"{manifest.encryption} ({len(manifest.recipients)} recipients)"),
            ("stored at", where),
            ("sha256", manifest.sha256),
            ("pruned", ", ".join(deleted) if deleted else "nothing"),
        ),
        next_step="nothing; the daily verification restores it at 04:00 WIB",
        details=f"## Rows per table at dump time\n\n| table | rows |\n|---|---|\n{rows}\n",
    )


def backup_failed(error: BaseException, database: str, storage_url: str, listed: Manifest | None = None) -> Report:
    outcome = (
        f"Backup {listed.id} itself was stored and verified; the step after it failed."
        if listed
        else "No new backup was recorded; older backups were not touched."
    )
    return Report(
        title=f"Backup FAILED: database {database}",
        ok=False,
        summary=f"The database backup failed: {error}\n{outcome}",
        facts=(("database", database), ("storage", storage_url)),
        next_step="fix the cause above, then run `sppg-backup backup db` (or press Retry on the flow run in the "
        f"Prefect UI). Check the newest good backup with `sppg-backup list` (storage {storage_url}).",
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


def verification_report(backup_id: str, result: Verification, storage_url: str, zone: ZoneInfo) -> Report:
    facts = (
        ("backup", backup_id),
        ("checked", shown_time(result.checked_at, zone)),
        ("duration", f"{result.duration_seconds:.1f} s"),
        ("storage", storage_url),
    )
    if result.status == "passed":
        return Report(
            title=f"Verification PASSED: {backup_id}",
            ok=True,
            summary=f"Backup {backup_id} restores: {result.detail}.",
            facts=facts,
            next_step="nothing; the backup is marked verified and is the first choice of a restore",
        )
    check = result.check or "verification"
    return Report(
        title=f"Backup verification FAILED ({check}): {backup_id}",
        ok=False,
        summary=f"Verification of backup {backup_id} failed at check '{check}': {result.detail}",
        facts=facts,
        next_step=f"{NEXT_STEP.get(check, 'read the error above and run `sppg-backup verify` again')}. "
        "Older verified backups: `sppg-backup list`.",
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def drill_report(result: DrillReport, where: str, zone: ZoneInfo) -> Report:
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
    if result.status == "passed":
        title = f"Recovery drill OK: RTO {_seconds(result.rto_seconds)}, RPO {_seconds(result.rpo_seconds)}"
        next_step = "nothing; the report is the evidence for the monthly compliance check"
    else:
        title = f"Recovery drill FAILED ({result.failed_step}): backup {result.backup_id or '-'}"
        next_step = "fix the cause above; until then a restore of this backup may not work. Run `sppg-backup drill`"
    return Report(
        title=title,
        ok=result.status == "passed",
        summary=f"Drill {result.id} at {shown_time(result.started_at, zone)} restored backup "
        f"{result.backup_id or '-'}: {result.status}.\n{result.detail}",
        facts=(
            ("backup", result.backup_id or "-"),
            ("RTO (time to a checked database)", _seconds(result.rto_seconds)),
            ("RPO (age of the restored data)", _seconds(result.rpo_seconds)),
            ("report", where),
        ),
        next_step=next_step + ".",
        details=f"## Steps\n\n| step | time |\n|---|---|\n{steps}\n\n"
        f"## Smoke checks\n\n| check | query | expected | got | |\n|---|---|---|---|---|\n{checks}{app}\n",
    )


ALERT_NEXT_STEP = {
    "backup_missing": "check the last backup-database flow run in the Prefect UI, fix its error and run "
    "`sppg-backup backup db`",
    "backup_size_drop": "check whether data was deleted from the database (audit logs, application errors) before "
    "the next backup overwrites the evidence; run `sppg-backup verify`",
    "verification_failed": "run `sppg-backup verify` to see the failing check; make a new backup and verify it",
    "leftovers": "nothing urgent: the next backup, verify or restore removes them (scratch folders may hold "
    "decrypted data: any next run removes those)",
    "services_left_stopped": "start them (`docker start <name>`), or run any restore, which starts them first; "
    "then check the application",
    "encryption_key_old": "make a new key (`sppg-backup keygen`), put its public key in AGE_RECIPIENTS and keep the "
    "old private key until every backup made with it has expired",
    "files_snapshot_missing": "check the last backup-files flow run in the Prefect UI and that UPLOADS_DIR is "
    "mounted; run `sppg-backup backup files`",
}
STORAGE_NEXT_STEP = "free space or raise the quota; `sppg-backup prune --dry-run` shows what retention would remove"
REPLICA_NEXT_STEP = (
    "check the last replicate-backups flow run in the Prefect UI (credentials, the replica bucket, its quota) and "
    "run `sppg-backup replicate`: it copies what the replica lacks"
)
SCHEDULE_NEXT_STEP = (
    "open the deployment in the Prefect UI: resume it or its schedule, check that a worker is online on the "
    "pool sppg-backup, and read the Prefect server's log for scheduler errors; meanwhile run the flow by hand"
)


def alert_started(alert: Alert, storage_url: str) -> tuple[str, str]:
    step = ALERT_NEXT_STEP.get(alert.name) or (
        SCHEDULE_NEXT_STEP
        if alert.name.startswith("schedule_")
        else REPLICA_NEXT_STEP
        if alert.name.startswith("replica_behind_")
        else STORAGE_NEXT_STEP
    )
    return f"ALERT {alert.name}: {alert.summary}", f"{alert.summary}\nStorage: {storage_url}\nNext step: {step}."


def alert_cleared(name: str) -> tuple[str, str]:
    return f"RESOLVED {name}", f"The alert {name} has cleared; backups are healthy on this point again."


def _restore_facts(plan: RestorePlan, zone: ZoneInfo) -> list[tuple[str, str]]:
    created = shown_time(plan.backup_created_at, zone)
    return [
        ("backup", f"{plan.backup_id} ({created}, {human_size(plan.backup_size)}, {plan.backup_verified})"),
        ("chosen because", plan.reason or "-"),
        ("target", plan.target_state),
        ("services", ", ".join(plan.services) or "none stopped"),
    ]


def _go_back(safety: Manifest | None) -> str:
    if safety is None:
        return ""
    return (
        f" To go back to the state before the restore, restore the safety backup {safety.id} "
        f"(backup_id = {safety.id}; `sppg-backup restore db {safety.id} --yes`)."
    )


def restore_planned(plan: RestorePlan, zone: ZoneInfo) -> Report:
    confirm = " and confirm ticked (--yes)" if plan.needs_confirmation else ""
    return Report(
        title=f"Restore plan (dry run): {plan.backup_id} into {plan.target.database}",
        ok=True,
        summary="Nothing was changed. The restore would: " + "; ".join(plan.describe(zone)) + ".",
        facts=(
            *_restore_facts(plan, zone),
            ("safety backup", "taken first" if plan.safety_backup else "none (the target has no data, or not asked)"),
            ("confirm", plan.confirmation),
        ),
        next_step=f"to restore, run it again with dry_run off{confirm}. The target is replaced only after the "
        "restored copy has every table's row count.",
    )


def restore_succeeded(plan: RestorePlan, safety: Manifest | None, kept: str | None, zone: ZoneInfo) -> Report:
    return Report(
        title=f"Restore OK: {plan.backup_id} into {plan.target.database}",
        ok=True,
        summary=f"Backup {plan.backup_id} was restored into {plan.target.label}; every table has the backup's row "
        "count and the smoke checks passed.",
        facts=(
            *_restore_facts(plan, zone),
            ("safety backup", safety.id if safety else "none (the target had no data, or not asked)"),
            ("replaced database", f"kept as {kept}" if kept else "dropped (the safety backup holds it)"),
        ),
        next_step="check the application." + _go_back(safety),
    )


RESTORE_NEXT_STEP = {
    "confirmation": "check that this is the database to replace, then run it again with confirm ticked (--yes)",
    "sha256": "this backup is corrupt: choose an older one (`sppg-backup list`)",
    "decrypt": "check SPPG_BACKUP_AGE_IDENTITY_FILE is the private key of a recipient in the manifest, then Retry",
}


def restore_failed(
    plan: RestorePlan | None,
    wanted: str,
    error: BaseException,
    safety: Manifest | None,
    services: str | None,
    zone: ZoneInfo,
) -> Report:
    """`wanted`: the backup and target as requested, for a failure before the plan was made."""
    check = error.check if isinstance(error, CheckFailed) else None
    if check == "verify":
        state = "The restored database is in place, but its smoke checks failed."
    elif plan is None:
        state = "Nothing was changed."
    else:
        state = "The target was not replaced (that happens only after the restored copy has the row counts)."
    step = RESTORE_NEXT_STEP.get(check or "") or (
        "fix the cause above, then press Retry on this flow run in the Prefect UI (or run `sppg-backup restore "
        "db` again): the safety backup and the download are not repeated"
    )
    facts = _restore_facts(plan, zone) if plan else [("requested", wanted)]
    facts.append(("safety backup", safety.id if safety else "none taken"))
    if services:
        facts.append(("services", services))
    return Report(
        title=f"Restore FAILED: {plan.backup_id if plan else wanted}"
        + (f" into {plan.target.database}" if plan else ""),
        ok=False,
        summary=f"The restore failed: {error}\n{state}",
        facts=tuple(facts),
        next_step=step + "." + _go_back(safety),
    )


def health_report(alerts: list[Alert], storage_url: str) -> Report:
    if not alerts:
        return Report(
            title="Backups healthy",
            ok=True,
            summary="A recent backup, no size drop, verification passing, storage below its limit, schedules running.",
            facts=(("storage", storage_url),),
            next_step="nothing",
        )
    steps = "\n".join(
        f"- **{a.name}**: {alert_started(a, storage_url)[1].rsplit('Next step: ', 1)[-1]}" for a in alerts
    )
    return Report(
        title=f"{len(alerts)} backup alert{'s' if len(alerts) > 1 else ''}: {', '.join(a.name for a in alerts)}",
        ok=False,
        summary="The guide's alert conditions found problems; each was notified when it started.",
        facts=tuple((a.name, a.summary) for a in alerts),
        next_step="see each alert's step below",
        details=f"## Next steps\n\n{steps}\n",
    )


def run_failed(what: str, error: BaseException, next_step: str) -> Report:
    """A flow that failed before it had anything of its own to report."""
    return Report(title=f"{what} FAILED", ok=False, summary=f"{what} failed: {error}", next_step=next_step)


def corruption_recovery(
    errors: dict[str, list[str]], result: dict[str, Any] | None, error: BaseException | None, dry_run: bool
) -> Report:
    """Scenario 1: what the logs said, and what the restore did (its own run has the details)."""
    lines = "\n\n".join(f"### {name}\n\n```\n" + "\n".join(found[-20:]) + "\n```" for name, found in errors.items())
    facts: list[tuple[str, str]] = [(f"errors in {name}", str(len(found))) for name, found in errors.items()]
    if result:
        facts += [
            ("backup", str(result.get("backup_id"))),
            ("safety backup", str(result.get("safety_backup_id") or "none")),
        ]
    details = f"## Error lines in the backend logs (the last 20 of each)\n\n{lines}\n" if lines else ""
    if error is not None:
        return Report(
            title="Scenario 1 (database corruption) recovery FAILED",
            ok=False,
            summary=f"The recovery failed: {error}",
            facts=tuple(facts),
            next_step="read the restore-database run of this recovery (its artifact says what was changed), fix "
            "the cause, and press Retry: finished steps are not repeated",
            details=details,
        )
    if dry_run:
        return Report(
            title="Scenario 1 (database corruption): plan (dry run)",
            ok=True,
            summary="Nothing was changed. The newest verified backup would be restored: "
            + "; ".join(str(step) for step in (result or {}).get("steps", [])),
            facts=tuple(facts),
            next_step="if the error lines show corruption, run it again with dry_run off and confirm ticked",
            details=details,
        )
    return Report(
        title="Scenario 1 (database corruption) recovered",
        ok=True,
        summary="The newest verified backup was restored, its row counts and users checked, the backends started.",
        facts=tuple(facts),
        next_step="check the application; data written since the backup was made is not in it",
        details=details,
    )


def base_succeeded(manifest: Manifest, where: str, zone: ZoneInfo) -> Report:
    physical = manifest.physical
    assert physical is not None
    return Report(
        title=f"Base backup OK: {manifest.id}",
        ok=True,
        summary=f"The cluster of {manifest.source.host}:{manifest.source.port} was backed up physically at "
        f"{shown_time(manifest.created_at, zone)}; with the WAL archive it restores to any later second.",
        facts=(
            ("base backup", manifest.id),
            ("server", f"{manifest.source.host}:{manifest.source.port}, PostgreSQL {manifest.server_version}"),
            ("system identifier", physical.system_identifier),
            ("WAL", f"{physical.start_lsn} to {physical.end_lsn} on timeline {physical.timeline} (inside the tar)"),
            ("size", f"{human_size(manifest.size)} ({manifest.size} bytes)"),
            ("duration", f"{manifest.duration_seconds:.1f} s"),
            ("encryption", f"{manifest.encryption} ({len(manifest.recipients)} recipients)"),
            ("stored at", where),
            ("sha256", manifest.sha256),
        ),
        next_step="nothing",
    )


def base_failed(error: BaseException, server: str, storage_url: str) -> Report:
    return Report(
        title="Base backup FAILED",
        ok=False,
        summary=f"The base backup of {server} to {storage_url} failed: {error}\nNo partial base backup is listed.",
        next_step="fix the cause above and run `sppg-backup backup base`",
    )
