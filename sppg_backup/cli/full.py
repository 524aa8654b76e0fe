"""Commands for the full-system backup: backup full, restore full."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sppg_backup.cli.common import Invocation, backup_app, fail, out, restore_app, target_without_password
from sppg_backup.display import human_size
from sppg_backup.errors import ConfigError


@backup_app.command("full")
def backup_full_command(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The full-system backup (the backup-full-system flow): database, APP_DIR, DOCKER_IMAGES, config."""
    given: Invocation = ctx.obj
    given.settings()
    from sppg_backup.flows.backup_full_system import backup_full_system

    result = given.run(backup_full_system)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    size = human_size(sum(p["size"] for p in result["parts"]))
    out.print(f"full-system backup {result['id']} stored: {len(result['parts'])} parts, {size}", highlight=False)


@restore_app.command("full")
def restore_full_command(
    ctx: typer.Context,
    set_id: Annotated[str | None, typer.Argument(help="Full-system backup id; the newest when omitted.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest full-system backup.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Replace application files, images and database.")] = False,
    app_dir: Annotated[Path | None, typer.Option(help="Where the application files go (default APP_DIR).")] = None,
    target_url: Annotated[str | None, typer.Option(help="Database to restore into (default DATABASE_URL).")] = None,
    no_safety_backup: Annotated[bool, typer.Option("--no-safety-backup")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The full recovery (the restore-full-system flow): download, stop, files, images, database, start, health."""
    given: Invocation = ctx.obj
    given.settings()
    if set_id and latest:
        fail(ConfigError("give a backup id or --latest, not both"))
    from sppg_backup.flows.restore_full_system import restore_full_system
    from sppg_backup.full.system import FullRestoreRequest

    request = FullRestoreRequest(
        set_id=set_id,
        confirm=yes,
        app_dir=str(app_dir.resolve()) if app_dir else None,
        target_url=target_without_password(target_url),
        safety_backup=not no_safety_backup,
    )
    result = given.run(restore_full_system, request=request)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(
        f"restored {result['set_id']}: files in {result['app_dir']}, images {', '.join(result['images']) or 'none'}"
        + (f", health {result['health']}" if result["health"] else ""),
        highlight=False,
    )
