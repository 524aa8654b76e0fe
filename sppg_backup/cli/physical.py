"""Point-in-time recovery commands: backup base."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sppg_backup.cli.common import Invocation, backup_app, out
from sppg_backup.display import human_size


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
