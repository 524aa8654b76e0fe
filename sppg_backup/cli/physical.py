"""Point-in-time recovery commands: backup base, restore pitr, wal stream, wal status, wal push, wal fetch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sppg_backup.cli.common import Invocation, app, backup_app, err, fail, given_time, out, restore_app
from sppg_backup.display import human_size
from sppg_backup.errors import BackupError, ConfigError, NotFoundError, TransientError
from sppg_backup.settings import Settings

T = TypeVar("T")


@backup_app.command("base")
def backup_base_command(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False
) -> None:
    """Physical base backup now (the backup-base flow): pg_basebackup over a replication connection."""
    given: Invocation = ctx.obj
    given.settings()
    from sppg_backup.flows.backup_base import backup_base

    manifest = given.run(backup_base)
    if as_json:
        print(json.dumps(manifest, indent=2))
        return
    physical = manifest["physical"]
    out.print(
        f"base backup {manifest['id']} stored: {human_size(manifest['size'])} in {manifest['duration_seconds']:.1f} s, "
        f"WAL {physical['start_lsn']} to {physical['end_lsn']} on timeline {physical['timeline']}, "
        f"sha256 {manifest['sha256'][:16]}...",
        highlight=False,
    )


wal_app = typer.Typer(help="The WAL archive: PostgreSQL's archive_command and restore_command.", no_args_is_help=True)
app.add_typer(wal_app, name="wal")
FETCH_ABORT = 200  # above 125: PostgreSQL stops the recovery instead of taking the WAL file as missing


def _storage(settings: Settings) -> Any:
    from sppg_backup.storage import open_storage
    from sppg_backup.tasks.credentials import gcp_credentials

    return open_storage(settings.storage_url, gcp_credentials(settings), settings.gcp_project)


def _storage_and_replicas(settings: Settings) -> tuple[Any, tuple[Any, ...]]:
    from sppg_backup.storage.destinations import open_destinations
    from sppg_backup.tasks.credentials import gcp_credentials

    dest = open_destinations(settings, gcp_credentials(settings))
    return dest.storage, dest.replicas


def _patiently(settings: Settings, call: Callable[[], T]) -> T:
    """A WAL command is called by PostgreSQL, not by a flow: it retries a transient error itself."""
    for attempt in range(settings.retries + 1):
        try:
            return call()
        except TransientError:
            if attempt == settings.retries:
                raise
            time.sleep(settings.retry_delay_seconds * 2**attempt)
    raise AssertionError("unreachable")


@wal_app.command("push")
def wal_push(
    ctx: typer.Context, path: Annotated[Path, typer.Argument(help="The WAL file (archive_command's %p).")]
) -> None:
    """Archive one WAL file: `archive_command = 'sppg-backup wal push %p'`. Exit 0 only once it is in storage."""
    given: Invocation = ctx.obj
    settings = given.settings()
    from sppg_backup.physical import wal

    if not path.is_file():
        fail(ConfigError(f"{path} is not a file"))
    recipients = given.run(settings.require_recipients)
    storage, copies = given.run(_storage_and_replicas, settings)
    key, stored = given.run(
        _patiently, settings, lambda: wal.push(storage, path, recipients, settings.compression_level)
    )
    if given.verbose:
        err.print(f"{'archived' if stored else 'already archived'}: {key}", highlight=False)
    from sppg_backup.ops.replicas import copy_new

    for problem in copy_new(storage, copies, [key]):  # archived: a replica that failed is replicate-backups' to fix
        err.print(f"warning: not copied to a replica yet: {problem}", highlight=False, soft_wrap=True)


@wal_app.command("fetch")
def wal_fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The WAL file's name (restore_command's %f).")],
    dest: Annotated[Path, typer.Argument(help="Where to write it (restore_command's %p).")],
) -> None:
    """Fetch one WAL file: `restore_command = 'sppg-backup wal fetch %f %p'`. A file never archived exits 1
    quietly (PostgreSQL asks for files that do not exist); a damaged one stops the recovery (exit 200)."""
    given: Invocation = ctx.obj
    from sppg_backup.physical import wal
    from sppg_backup.settings import load_settings
    from sppg_backup.stream.crypto import identities_from

    try:  # a bad setting too stops the recovery: exit 2 would read as "no such file" and end it short
        settings = load_settings(given.config)
        identities = identities_from(settings.age_identity_file) if settings.age_identity_file else []
        _patiently(settings, lambda: wal.fetch(_storage(settings), name, dest, identities))
    except NotFoundError:
        raise typer.Exit(1) from None
    except BackupError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(FETCH_ABORT) from None


@wal_app.command("stream")
def wal_stream(ctx: typer.Context) -> None:
    """Receive WAL continuously (pg_receivewal on REPLICATION_SLOT) into storage; runs until SIGTERM, which
    uploads what it has and exits 0. Run it as a service (deployments/sppg-backup-wal.service)."""
    import signal
    import threading

    given: Invocation = ctx.obj
    settings = given.settings()
    from sppg_backup.physical.receiver import Receiver

    recipients = given.run(settings.require_recipients)
    storage, copies = given.run(_storage_and_replicas, settings)
    receiver = Receiver(settings, storage, recipients, replicas=copies)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    err.print(f"receiving WAL from slot {settings.replication_slot} into {settings.storage_url}", highlight=False)
    receiver.run(
        stop, on_upload=(lambda name: err.print(f"uploaded {name}", highlight=False)) if given.verbose else None
    )


@wal_app.command("status")
def wal_status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The newest WAL in storage, how many seconds and bytes it is behind, what the slot holds on the server."""
    given: Invocation = ctx.obj
    settings = given.settings()
    from sppg_backup.physical.receiver import status

    facts = given.run(status, settings, given.run(_storage, settings), time.time())
    if as_json:
        print(json.dumps(facts, indent=2))
        return
    for name, value in facts.items():
        out.print(f"{name}: {value if value is not None else '-'}", highlight=False)


@restore_app.command("pitr")
def restore_pitr_command(
    ctx: typer.Context,
    target_dir: Annotated[
        Path | None, typer.Option(help="A new or empty folder for the recovered server's data (not with --replace).")
    ] = None,
    to: Annotated[
        str | None, typer.Option(help="The time to recover to (ISO 8601; without a zone, in SPPG_BACKUP_TIMEZONE).")
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Recover to the newest WAL in storage.")] = False,
    port: Annotated[int, typer.Option(help="The port it listens on (default: a free one).")] = 0,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Put the recovered data in place of the database container's (SPPG_BACKUP_DB_CONTAINER); "
            "its old data is kept aside.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --replace over the running database.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bring the database back to any second (the restore-pitr flow): base backup + WAL into a new data
    directory, recovered, promoted and checked, beside the running database, which is not touched; with
    --replace --yes, then in place of the database container's data."""
    given: Invocation = ctx.obj
    settings = given.settings()
    if (to is None) == (not latest):
        fail(ConfigError("give one of --to TIME or --latest"))
    moment = given_time(to, "--to", settings.zone) if to is not None else None
    from sppg_backup.flows.restore_pitr import restore_pitr
    from sppg_backup.physical.pitr import PitrRequest

    if target_dir is None and not replace:
        fail(ConfigError("give --target-dir (a new or empty folder), or --replace"))
    folder = str(target_dir.resolve()) if target_dir else None
    request = PitrRequest(to=moment, latest=latest, target_dir=folder, port=port, replace=replace, confirm=yes)
    result = given.run(restore_pitr, request=request, json_failure={} if as_json else None)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    if replace:
        out.print(
            f"recovered to {to or 'the latest WAL'} and put in place of {result['replaced']}: {result['url']} "
            f"(base backup {result['base_backup_id']}, {result['wal_files']} WAL files, {result['seconds']:.1f} s); "
            f"its old data is kept in {result['kept']}",
            highlight=False,
        )
        return
    out.print(
        f"recovered to {to or 'the latest WAL'}: {result['url']} (port {result['port']}, data {result['data_dir']}, "
        f"base backup {result['base_backup_id']}, {result['wal_files']} WAL files, {result['seconds']:.1f} s)",
        highlight=False,
    )
