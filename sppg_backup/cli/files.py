"""Commands for uploads and configuration: backup files|config, restore files|config, history."""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sppg_backup.cli.common import Invocation, app, backup_app, err, existing_storage, fail, out, restore_app
from sppg_backup.display import human_size, shown_time
from sppg_backup.errors import ConfigError, Stopped


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _print_snapshot(result: dict[str, Any] | Any, as_json: bool) -> None:
    if not isinstance(result, dict):  # a scheduled snapshot skipped while another ran (never one a command runs)
        out.print("skipped: another snapshot was running", highlight=False)
    elif as_json:
        print(json.dumps(result, indent=2))
    elif result.get("status") == "unchanged":
        out.print("nothing changed since the last snapshot; none taken", highlight=False)
    else:
        out.print(
            f"snapshot {result['id']}: {result['files']} files ({human_size(result['bytes'])}), "
            f"{result['uploaded_blobs']} new uploaded ({human_size(result['uploaded_bytes'])})",
            highlight=False,
        )
        for skipped in result["skipped"]:
            err.print(f"[yellow]skipped:[/yellow] {skipped['path']}: {skipped['reason']}", highlight=False)


def _signature(root: Path) -> set[tuple[str, int, int, int]]:
    """What --watch compares between polls: every path with its size, mtime and inode."""
    seen = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            seen.add((path, info.st_size, info.st_mtime_ns, info.st_ino))
    return seen


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@backup_app.command("files")
def backup_files_command(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: snapshot whenever something changes.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks for changes with --watch.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Snapshot the uploads folder now (the backup-files flow): only new or changed content is uploaded."""
    given: Invocation = ctx.obj
    settings = given.settings()
    from sppg_backup.flows.backup_files import backup_files

    if not watch:
        _print_snapshot(given.run(backup_files), as_json)
        return
    if settings.uploads_dir is None or not settings.uploads_dir.is_dir():
        fail(ConfigError(f"bad setting SPPG_BACKUP_UPLOADS_DIR: {settings.uploads_dir or '(empty)'} is not a folder"))
    last: set[tuple[str, int, int, int]] | None = None
    signal.signal(signal.SIGTERM, _stop)  # a service manager stops it like Ctrl-C does
    out.print(f"watching {settings.uploads_dir} every {interval:g} s; Ctrl-C stops", highlight=False)
    from prefect.exceptions import TerminationSignal

    try:
        while True:
            current = _signature(settings.uploads_dir)
            if current != last:
                try:
                    _print_snapshot(backup_files(), as_json)
                    last = current
                except (Stopped, TerminationSignal):
                    break  # SIGTERM while a snapshot ran: Prefect took the signal, the run says it was stopped
                except Exception as exc:  # keep watching; the flow has notified
                    err.print(f"[red]error:[/red] {exc}; trying again in {interval:g} s", highlight=False)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    out.print("stopped watching", highlight=False)


@backup_app.command("config")
def backup_config_command(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Snapshot CONFIG_PATHS when their content changed (the backup-config flow)."""
    given: Invocation = ctx.obj
    given.settings()
    from sppg_backup.flows.backup_config import backup_config

    _print_snapshot(given.run(backup_config), as_json)


def _moment(given: Invocation, text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(ConfigError(f"{option} {text!r} is not a time like 2026-11-24T03:00 or 2026-11-24 03:00+07:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=given.settings().zone)


def _print_restored(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        same = f"; {result['already_there']} already there, left as they were" if result["already_there"] else ""
        out.print(
            f"restored {_files(result['files'])} ({human_size(result['bytes'])}) of {result['snapshot']} "
            f"into {result['target']}{same}",
            highlight=False,
        )


@restore_app.command("files")
def restore_files_command(
    ctx: typer.Context,
    target: Annotated[Path, typer.Option(help="Folder to restore into.")],
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: the newest).")] = None,
    as_of: Annotated[str | None, typer.Option(help="The newest snapshot taken at or before this time.")] = None,
    path: Annotated[str | None, typer.Option(help="Only this file or folder, as named in the snapshot.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files that exist in the target.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore uploaded files (the restore-files flow); one version of one file is --path with --as-of."""
    given: Invocation = ctx.obj
    given.settings()
    if snapshot and as_of:
        fail(ConfigError("give --snapshot or --as-of, not both"))
    from sppg_backup.files.restore import FilesRestoreRequest
    from sppg_backup.flows.restore_files import restore_files

    request = FilesRestoreRequest(
        target=str(target.resolve()),
        snapshot_id=snapshot,
        as_of=_moment(given, as_of, "--as-of"),
        path=path,
        overwrite=overwrite,
    )
    _print_restored(given.run(restore_files, request=request), as_json)


@restore_app.command("config")
def restore_config_command(
    ctx: typer.Context,
    target: Annotated[Path, typer.Option(help="Folder to restore into (e.g. /opt/erp-sppg).")],
    snapshot_id: Annotated[str | None, typer.Argument(help="Snapshot id; the newest when omitted.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest snapshot.")] = False,
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (same as the argument).")] = None,
    path: Annotated[str | None, typer.Option(help="Only this file or folder, e.g. .env or nginx.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files that exist in the target.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore the configuration files (the restore-config flow); then restart the services."""
    given: Invocation = ctx.obj
    given.settings()
    if sum(bool(x) for x in (snapshot_id, snapshot, latest)) > 1:
        fail(ConfigError("give one of a snapshot id, --snapshot or --latest"))
    from sppg_backup.files.restore import FilesRestoreRequest
    from sppg_backup.flows.restore_files import restore_config

    request = FilesRestoreRequest(
        target=str(target.resolve()), snapshot_id=snapshot_id or snapshot, path=path, overwrite=overwrite
    )
    _print_restored(given.run(restore_config, request=request), as_json)


@app.command("history")
def history_command(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A file as named in the snapshots, e.g. 2024/12/01/invoice.pdf.")],
    kind: Annotated[str, typer.Option(help="files or config.")] = "files",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The versions of one file across snapshots, oldest first."""
    given: Invocation = ctx.obj
    from sppg_backup.files import restore
    from sppg_backup.tasks.files import identities

    settings = given.settings()
    if kind not in ("files", "config"):
        fail(ConfigError(f"unknown kind {kind!r}: use files or config"))
    storage = given.run(existing_storage, settings)
    versions = given.run(restore.history, storage, kind, given.run(identities, settings), path)
    if as_json:
        print(json.dumps([v.model_dump(mode="json") for v in versions], indent=2))
        return
    table = Table(title=f"Versions of {path}")
    for column in ("version", "size", f"modified ({settings.timezone})", "first snapshot", "last snapshot", "sha256"):
        table.add_column(column)
    for v in versions:
        last = f"{v.last_snapshot}" + (f" (deleted in {v.gone_in})" if v.gone_in else "")
        table.add_row(
            str(v.number),
            human_size(v.size),
            shown_time(v.mtime, settings.zone),
            v.first_snapshot,
            last,
            (v.sha256 or "symlink")[:16],
        )
    out.print(table)
    out.print(
        f"restore one: sppg-backup restore {kind} --snapshot SNAPSHOT --path {shlex.quote(path)} --target DIR",
        highlight=False,
    )
