"""Database commands: backup db, restore db, verify, drill."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from sppg_backup import keys
from sppg_backup.cli.common import (
    Invocation,
    app,
    backup_app,
    err,
    existing_storage,
    fail,
    out,
    restore_app,
    target_without_password,
)
from sppg_backup.display import shown_time
from sppg_backup.errors import ConfigError


@backup_app.command("db")
def backup_db(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False
) -> None:
    """Back up the database now (the backup-database flow)."""
    given: Invocation = ctx.obj
    given.settings()
    from sppg_backup.flows.backup_database import backup_database

    manifest = given.run(backup_database)
    if as_json:
        print(json.dumps(manifest, indent=2))
        return
    from sppg_backup.display import human_size

    out.print(
        f"backup {manifest['id']} stored: {human_size(manifest['size'])} in {manifest['duration_seconds']:.1f} s, "
        f"{len(manifest['tables'])} tables, sha256 {manifest['sha256'][:16]}...",
        highlight=False,
    )


@restore_app.command("db")
def restore_db(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(help="Backup id; the newest usable one when omitted.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest usable backup.")] = False,
    before: Annotated[
        str | None,
        typer.Option(
            help="The newest backup made before this time (ISO 8601; without a zone, in SPPG_BACKUP_TIMEZONE)."
        ),
    ] = None,
    target_url: Annotated[str | None, typer.Option(help="Database to restore into (default DATABASE_URL).")] = None,
    stop_services: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated containers or Compose services to stop during the restore (default SERVICES)."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Restore over a database that has data or connections.")] = False,
    no_safety_backup: Annotated[bool, typer.Option("--no-safety-backup", help="Skip the safety backup.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore the database (the restore-database flow): safety backup, stop services, restore, verify, start."""
    given: Invocation = ctx.obj
    settings = given.settings()
    if sum(bool(x) for x in (backup_id, latest, before)) > 1:
        fail(ConfigError("give one of BACKUP_ID, --latest, --before"))
    from datetime import datetime

    from sppg_backup.db.recovery import RestoreRequest
    from sppg_backup.flows.restore_database import restore_database

    moment = None
    if before:
        try:
            moment = datetime.fromisoformat(before)
        except ValueError:
            fail(ConfigError(f"--before {before!r} is not a time like 2026-11-24T03:00 or 2026-11-24 03:00+07:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=settings.zone)
    request = RestoreRequest(
        backup_id=backup_id,
        before=moment,
        target_url=target_without_password(target_url),
        confirm=yes,
        safety_backup=not no_safety_backup,
        stop_services=[s.strip() for s in (stop_services or "").split(",") if s.strip()],
        keep_services_running=stop_services is not None and not stop_services.strip(),
        dry_run=dry_run,
    )
    result = given.run(restore_database, request=request, json_failure={"backup_id": backup_id} if as_json else None)
    if as_json:
        print(json.dumps(result, indent=2))
    elif dry_run:
        out.print(result["report"], highlight=False)
    else:
        out.print(
            f"restored {result['backup_id']} into {result['target']['label']}"
            + (f"; safety backup {result['safety_backup_id']}" if result["safety_backup_id"] else ""),
            highlight=False,
        )


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(help="Backup id; the newest when omitted.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Verify the newest backup.")] = False,
    kind: Annotated[str, typer.Option(help="db (dumps) or base (base backups); an id names its own kind.")] = "db",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify a backup: a dump (the verify-backup flow: sha256, decrypt, pg_restore --list, test restore, row
    counts) or a base backup (verify-base-backup: sha256, pg_verifybackup, start, smoke checks)."""
    given: Invocation = ctx.obj
    if backup_id and latest:
        err.print("[red]error:[/red] give a backup id or --latest, not both")
        raise typer.Exit(2)
    if kind not in ("db", "base"):
        fail(ConfigError(f"unknown kind {kind!r}: use db or base"))
    given.settings()
    failure = {"backup_id": backup_id} if as_json else None
    if kind == "base" or (backup_id or "").startswith(keys.BASE_PREFIX):
        from sppg_backup.flows.verify_base_backup import verify_base_backup

        result = given.run(verify_base_backup, backup_id=backup_id, json_failure=failure)
    else:
        from sppg_backup.flows.verify_backup import verify_backup

        result = given.run(verify_backup, backup_id=backup_id, json_failure=failure)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(
        f"backup {result['backup_id']} verified: {result['detail']} ({result['duration_seconds']:.1f} s)",
        highlight=False,
    )


@app.command("drill")
def drill_command(
    ctx: typer.Context,
    show_history: Annotated[bool, typer.Option("--history", help="Show past drills from storage.")] = False,
    pitr: Annotated[
        bool, typer.Option("--pitr", help="The physical drill: newest base backup and all WAL after it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Weekly recovery drill (the recovery-drill flow): restore the newest backup, check it, report RTO and RPO.
    With --pitr (recovery-drill-pitr): recover the newest base backup to the newest archived WAL instead."""
    given: Invocation = ctx.obj
    settings = given.settings()
    if show_history:
        from sppg_backup.db.drill import history

        storage = given.run(existing_storage, settings)
        reports, unreadable = given.run(history, storage)
        if as_json:
            print(json.dumps([r.model_dump(mode="json") for r in reports], indent=2))
            return
        table = Table(title=f"Recovery drills in {settings.storage_url}")
        for column in ("drill", "kind", f"started ({settings.timezone})", "backup", "status", "RTO s", "RPO h"):
            table.add_column(column)
        for r in reports:
            rpo = f"{r.rpo_seconds / 3600:.1f}" if r.rpo_seconds is not None else "-"
            rto = f"{r.rto_seconds:.1f}" if r.rto_seconds is not None else "-"
            status = r.status if r.status == "passed" else f"FAILED ({r.failed_step})"
            started = shown_time(r.started_at, settings.zone)
            table.add_row(r.id, r.kind, started, r.backup_id or "-", status, rto, rpo)
        out.print(table)
        for key in unreadable:
            err.print(f"[yellow]warning:[/yellow] unreadable drill report {key}", highlight=False)
        return
    from sppg_backup.flows.recovery_drill import recovery_drill, recovery_drill_pitr

    result = given.run(recovery_drill_pitr if pitr else recovery_drill, json_failure={} if as_json else None)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    if pitr:
        out.print(
            f"drill {result['id']} passed: base backup {result['backup_id']} and its WAL recovered, RTO "
            f"{result['rto_seconds']:.1f} s, RPO {result['rpo_seconds']:.0f} s (the newest WAL in storage)",
            highlight=False,
        )
        return
    out.print(
        f"drill {result['id']} passed: backup {result['backup_id']} restored, RTO {result['rto_seconds']:.1f} s, "
        f"RPO {result['rpo_seconds'] / 3600:.1f} h",
        highlight=False,
    )
