"""Commands for the full-system backup: backup full, restore full, and `list --kind full`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .catalog import human_size, shown_time
from .cli import backup_app, err, fail, out, restore_app, run, target_without_password
from .errors import ConfigError
from .settings import load_settings


def list_sets(settings: Any, storage: Any, as_json: bool) -> None:
    from . import full_system

    sets, unreadable = run(full_system.list_sets, storage)
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in sets], indent=2))
        return
    if not sets and not unreadable:
        out.print(f"no full-system backups in {settings.storage_url} yet (sppg-backup backup full)", highlight=False)
        return
    table = Table(title=f"Full-system backups in {settings.storage_url}")
    for column in ("id", f"created ({settings.timezone})", "database", "images", "size"):
        table.add_column(column)
    for full in sets:
        table.add_row(
            full.id,
            shown_time(full.created_at, settings.zone),
            full.part("database")[0].ref if full.part("database") else "-",
            ", ".join(full.images) or "-",
            human_size(sum(p.size for p in full.parts)),
        )
    out.print(table)
    for key, problem in unreadable:
        err.print(f"[yellow]warning:[/yellow] unreadable manifest {key}: {problem}", highlight=False)


@backup_app.command("full")
def backup_full_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The full-system backup (the backup-full-system flow): database, APP_DIR, DOCKER_IMAGES, config."""
    run(load_settings)
    from flows.backup_full_system import backup_full_system

    result = run(backup_full_system)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    size = human_size(sum(p["size"] for p in result["parts"]))
    out.print(f"full-system backup {result['id']} stored: {len(result['parts'])} parts, {size}", highlight=False)


@restore_app.command("full")
def restore_full_command(
    set_id: Annotated[str | None, typer.Argument(help="Full-system backup id; the newest when omitted.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest full-system backup.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Replace application files, images and database.")] = False,
    app_dir: Annotated[Path | None, typer.Option(help="Where the application files go (default APP_DIR).")] = None,
    target_url: Annotated[str | None, typer.Option(help="Database to restore into (default DATABASE_URL).")] = None,
    no_safety_backup: Annotated[bool, typer.Option("--no-safety-backup")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The full recovery (the restore-full-system flow): download, stop, files, images, database, start, health."""
    run(load_settings)
    if set_id and latest:
        fail(ConfigError("give a backup id or --latest, not both"))
    from flows.restore_full_system import restore_full_system
    from tasks.full import FullRestoreRequest

    request = FullRestoreRequest(
        set_id=set_id,
        confirm=yes,
        app_dir=str(app_dir.resolve()) if app_dir else None,
        target_url=target_without_password(target_url),
        safety_backup=not no_safety_backup,
    )
    result = run(restore_full_system, request=request)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(
        f"restored {result['set_id']}: files in {result['app_dir']}, images {', '.join(result['images']) or 'none'}"
        + (f", health {result['health']}" if result["health"] else ""),
        highlight=False,
    )
