"""The sppg-backup command: each command runs one flow (or reads the catalog) and prints its result."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from . import cli_runs
from .catalog import shown_time
from .errors import BackupError, CheckFailed, ConfigError, Stopped
from .settings import ENV_PREFIX, load_settings, masked

app = typer.Typer(help="Backup and disaster recovery for ERP SPPG.", no_args_is_help=True, add_completion=False)
backup_app = typer.Typer(help="Make a backup.", no_args_is_help=True)
restore_app = typer.Typer(help="Restore a backup.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")
app.add_typer(config_app, name="config")
app.add_typer(restore_app, name="restore")
VERBOSE = {"on": False}
# Piped output (logs, cron mail) is not wrapped at 80 columns: ids and paths stay whole.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 400)


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    if config is not None:
        os.environ[ENV_PREFIX + "CONFIG"] = str(config.resolve())
    VERBOSE["on"] = verbose
    if not verbose:
        # Prefect's console logs (tracebacks included) still reach the Prefect API; the terminal gets one line.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def run(func: Any, *args: Any, json_failure: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Call a flow or core function; turn our errors into one line and an exit code.

    With `json_failure` (commands given --json), a failed check is also printed as JSON on stdout.
    """
    try:
        from prefect import Flow

        if not isinstance(func, Flow):
            return func(*args, **kwargs)
        from prefect import tags

        cli_runs.guarded(cli_runs.crash_runs_of_killed_commands)
        with tags(cli_runs.tag()):  # which process runs it: a later command tells a killed one's run apart
            return func(*args, **kwargs)
    except Exception as exc:
        if VERBOSE["on"] and not isinstance(exc, BackupError):
            raise
        if json_failure is not None and isinstance(exc, CheckFailed):
            print(json.dumps({**json_failure, "status": "failed", "check": exc.check, "detail": str(exc)}))
        fail(exc)


def fail(exc: Exception) -> NoReturn:
    """One line on stderr; exit 2 for bad configuration, 1 for everything else."""
    from prefect.exceptions import TerminationSignal

    if isinstance(exc, TerminationSignal):
        exc = Stopped()
    if isinstance(exc, CheckFailed):
        message = f"check '{exc.check}' failed: {exc}"
    elif isinstance(exc, BackupError):
        message = str(exc)
    else:  # a bug or an unforeseen failure: still one line, details with -v or in the Prefect UI
        message = f"unexpected {type(exc).__name__}: {exc} (run with -v for details)"
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2 if isinstance(exc, ConfigError) else 143 if isinstance(exc, Stopped) else 1) from None


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings, secrets masked."""
    settings = run(load_settings)
    for name, value in masked(settings).items():
        out.print(f"{ENV_PREFIX}{name.upper()} = {json.dumps(value)}", highlight=False)


@backup_app.command("db")
def backup_db(as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False) -> None:
    """Back up the database now (the backup-database flow)."""
    run(load_settings)
    from flows.backup_database import backup_database

    manifest = run(backup_database)
    if as_json:
        print(json.dumps(manifest, indent=2))
        return
    from .catalog import human_size

    out.print(
        f"backup {manifest['id']} stored: {human_size(manifest['size'])} in {manifest['duration_seconds']:.1f} s, "
        f"{len(manifest['tables'])} tables, sha256 {manifest['sha256'][:16]}...",
        highlight=False,
    )


def target_without_password(url: str | None) -> str | None:
    """A --target-url's password goes to the run through the environment (TARGET_PASSWORD), never into the run's
    parameters, which Prefect keeps and shows."""
    if not url:
        return url
    from .postgres import split_password

    bare, password = run(split_password, url)
    if password:
        os.environ[ENV_PREFIX + "TARGET_PASSWORD"] = str(password)
    return bare


@restore_app.command("db")
def restore_db(
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
    settings = run(load_settings)
    if sum(bool(x) for x in (backup_id, latest, before)) > 1:
        fail(ConfigError("give one of BACKUP_ID, --latest, --before"))
    from datetime import datetime

    from flows.restore_database import restore_database
    from tasks.restore import RestoreRequest

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
    result = run(restore_database, request=request, json_failure={"backup_id": backup_id} if as_json else None)
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
    backup_id: Annotated[str | None, typer.Argument(help="Backup id; the newest when omitted.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Verify the newest backup.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify a backup (the verify-backup flow): sha256, decrypt, pg_restore --list, test restore, row counts."""
    if backup_id and latest:
        err.print("[red]error:[/red] give a backup id or --latest, not both")
        raise typer.Exit(2)
    run(load_settings)
    from flows.verify_backup import verify_backup

    result = run(verify_backup, backup_id=backup_id, json_failure={"backup_id": backup_id} if as_json else None)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(
        f"backup {result['backup_id']} verified: {result['detail']} ({result['duration_seconds']:.1f} s)",
        highlight=False,
    )


@app.command("drill")
def drill_command(
    show_history: Annotated[bool, typer.Option("--history", help="Show past drills from storage.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Weekly recovery drill (the recovery-drill flow): restore the newest backup, check it, report RTO and RPO."""
    settings = run(load_settings)
    if show_history:
        from .drill import history

        storage = run(existing_storage, settings)
        reports, unreadable = run(history, storage)
        if as_json:
            print(json.dumps([r.model_dump(mode="json") for r in reports], indent=2))
            return
        table = Table(title=f"Recovery drills in {settings.storage_url}")
        for column in ("drill", f"started ({settings.timezone})", "backup", "status", "RTO s", "RPO h"):
            table.add_column(column)
        for r in reports:
            rpo = f"{r.rpo_seconds / 3600:.1f}" if r.rpo_seconds is not None else "-"
            rto = f"{r.rto_seconds:.1f}" if r.rto_seconds is not None else "-"
            status = r.status if r.status == "passed" else f"FAILED ({r.failed_step})"
            table.add_row(r.id, shown_time(r.started_at, settings.zone), r.backup_id or "-", status, rto, rpo)
        out.print(table)
        for key in unreadable:
            err.print(f"[yellow]warning:[/yellow] unreadable drill report {key}", highlight=False)
        return
    from flows.recovery_drill import recovery_drill

    result = run(recovery_drill, json_failure={} if as_json else None)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(
        f"drill {result['id']} passed: backup {result['backup_id']} restored, RTO {result['rto_seconds']:.1f} s, "
        f"RPO {result['rpo_seconds'] / 3600:.1f} h",
        highlight=False,
    )


@app.command("status")
def status_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Backup health (the check-backup-health flow): exit 0 when healthy, 1 naming each active alert."""
    run(load_settings)
    from flows.check_backup_health import check_backup_health

    result = run(check_backup_health)
    if as_json:
        print(json.dumps(result, indent=2))
    elif result["healthy"]:
        out.print("healthy: a recent backup, no size drop, verification passing, storage below its limit")
    for alert in result["alerts"]:
        if not as_json:
            err.print(f"[red]ALERT[/red] {alert['name']}: {alert['summary']}", highlight=False, soft_wrap=True)
    if not result["healthy"]:
        raise typer.Exit(1)


@app.command("list")
def list_command(
    kind: Annotated[str, typer.Option(help="Kind of backup: db, files, config or full.")] = "db",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List backups from storage alone (manifests), newest last."""
    from .catalog import human_size, list_backups, to_json

    settings = run(load_settings)
    if kind not in ("db", "files", "config", "full"):
        err.print(f"[red]error:[/red] unknown kind {kind!r}: use db, files, config or full")
        raise typer.Exit(2)
    storage = run(existing_storage, settings)
    if kind in ("files", "config"):
        list_snapshots(settings, storage, kind, as_json)
        return
    if kind == "full":
        from .cli_full import list_sets

        list_sets(settings, storage, as_json)
        return
    listing = run(list_backups, storage, (kind,))
    if as_json:
        print(to_json(listing))
        return
    table = Table(title=f"Backups in {settings.storage_url}")
    for column in ("id", f"created ({settings.timezone})", "size", "tables", "encryption", "verified", "purpose"):
        table.add_column(column)
    for m in listing.backups:
        verified = "yes" if m.verified else (f"[red]FAILED[/red] ({m.verification.check})" if m.verification else "-")
        purpose = f"[yellow]SAFETY[/yellow] ({m.note})" if m.purpose == "safety" else "backup"
        table.add_row(
            m.id,
            shown_time(m.created_at, settings.zone),
            human_size(m.size),
            str(len(m.tables)),
            m.encryption,
            verified,
            purpose,
        )
    out.print(table)
    for key, problem in listing.unreadable:
        err.print(f"[yellow]warning:[/yellow] unreadable manifest {key}: {problem}", highlight=False)
    for key in listing.orphans:
        err.print(f"[yellow]warning:[/yellow] {key} has no manifest: incomplete, not a backup", highlight=False)


def list_snapshots(settings: Any, storage: Any, kind: Any, as_json: bool) -> None:
    from .catalog import human_size
    from .snapshots import list_snapshots as read_snapshots

    listing = run(read_snapshots, storage, kind)
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in listing.snapshots], indent=2))
        return
    if not listing.snapshots and not listing.unreadable:
        out.print(f"no {kind} snapshots in {settings.storage_url} yet (sppg-backup backup {kind})", highlight=False)
        return
    table = Table(title=f"{kind.capitalize()} snapshots in {settings.storage_url}")
    for column in ("id", f"taken ({settings.timezone})", "files", "size", "uploaded", "skipped"):
        table.add_column(column)
    for snap in listing.snapshots:
        table.add_row(
            snap.id,
            shown_time(snap.created_at, settings.zone),
            str(snap.files),
            human_size(snap.bytes),
            human_size(snap.uploaded_bytes),
            str(len(snap.skipped)) if snap.skipped else "-",
        )
    out.print(table)
    for key, problem in listing.unreadable:
        err.print(f"[yellow]warning:[/yellow] unreadable manifest {key}: {problem}", highlight=False)


@app.command("prune")
def prune_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")] = False,
    kind: Annotated[str, typer.Option(help="db, or files (needs AGE_IDENTITY_FILE to read snapshots).")] = "db",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Delete backups past retention (db: local 30 days, cloud 365 days, never the newest good backup;
    files: 90 days, but the last 5 versions of every file stay)."""
    run(existing_storage, run(load_settings))
    if kind == "files":
        from flows.prune_file_snapshots import prune_file_snapshots

        files = run(prune_file_snapshots, dry_run=dry_run)
        if as_json:
            print(json.dumps(files, indent=2))
            return
        verb = "would delete" if dry_run else "deleted"
        out.print(
            f"files: {verb} {len(files['deleted_snapshots'])} snapshots and {len(files['deleted_objects'])} "
            f"unreferenced objects; kept {len(files['kept_snapshots'])} snapshots",
            highlight=False,
        )
        for snap_id in files["deleted_snapshots"]:
            out.print(f"  {verb} {snap_id}", highlight=False)
        return
    if kind != "db":
        fail(ConfigError(f"unknown kind {kind!r}: use db or files"))
    from flows.prune_backups import prune_backups

    results = run(prune_backups, dry_run=dry_run)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for result in results:
        out.print(f"{result['location']}: {verb} {len(result['deleted'])}, kept {len(result['kept'])}")
        for backup_id in result["deleted"]:
            out.print(f"  {verb} {backup_id} ({result['reasons'][backup_id]})", highlight=False)


@app.command("keygen")
def keygen(path: Annotated[Path, typer.Argument(help="Where to write the private key (age format).")]) -> None:
    """Make an age key pair; put the printed public key in SPPG_BACKUP_AGE_RECIPIENTS."""
    from .crypto import generate_key_file

    if path.exists():
        fail(ConfigError(f"{path} exists; not overwriting a key"))
    out.print(run(generate_key_file, path))


@app.command("serve")
def serve() -> None:
    """Serve every deployment (schedules included) from this process, without a work pool."""
    from deployments.serve import serve_all

    run(serve_all)  # a missing prefect.yaml is one line


@app.command("demo")
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its cluster, keys and backups.")] = Path(".demo"),
    scale: Annotated[int, typer.Option(help="Sample data size (1 is about 2 MB).")] = 5,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the sample database running afterwards.")] = False,
) -> None:
    """Throwaway PostgreSQL with a sample ERP database, file:// storage, a demo key: back it up and list it."""
    from .demo import run_demo

    run(run_demo, workdir.resolve(), scale, out, keep)


def existing_storage(settings: Any) -> Any:
    """The configured storage; a storage directory that does not exist is an error, not an empty catalog."""
    from .errors import NotFoundError
    from .storage import open_storage

    credentials = None
    if settings.storage_url.startswith("gs://"):
        from tasks.common import gcp_credentials

        credentials = gcp_credentials(settings)
    storage = open_storage(settings.storage_url, credentials, settings.gcp_project)
    if storage.folder is not None and not storage.folder.is_dir():
        raise NotFoundError(f"storage directory {storage.folder} does not exist; check SPPG_BACKUP_STORAGE_URL")
    return storage


def main() -> None:
    # Our own warnings (retries, skipped notifications) on the terminal; Prefect's go to its API (and with -v here).
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    ours = logging.getLogger("sppg_backup")
    ours.addHandler(handler)
    ours.setLevel(logging.WARNING)
    ours.propagate = False
    cli_runs.guarded(cli_runs.stop_orphaned_servers)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


from . import cli_files, cli_full  # noqa: E402,F401  (register their commands on the apps above)
