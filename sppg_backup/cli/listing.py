"""`list`: every kind of backup, read from storage alone."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from sppg_backup.cli.common import Invocation, app, err, existing_storage, out
from sppg_backup.display import human_size, shown_time


@app.command("list")
def list_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="Kind of backup: db, base, files, config or full.")] = "db",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List backups from storage alone (manifests), newest last."""
    given: Invocation = ctx.obj
    from sppg_backup.db.catalog import list_backups, to_json
    from sppg_backup.display import human_size

    settings = given.settings()
    if kind not in ("db", "base", "files", "config", "full"):
        err.print(f"[red]error:[/red] unknown kind {kind!r}: use db, base, files, config or full")
        raise typer.Exit(2)
    storage = given.run(existing_storage, settings)
    if kind in ("files", "config"):
        list_snapshots(given, settings, storage, kind, as_json)
        return
    if kind == "full":
        list_sets(given, settings, storage, as_json)
        return
    listing = given.run(list_backups, storage, (kind,))
    if as_json:
        print(to_json(listing))
        return
    table = Table(title=f"Backups in {settings.storage_url}")
    contents = "WAL (timeline)" if kind == "base" else "tables"
    for column in ("id", f"created ({settings.timezone})", "size", contents, "encryption", "verified", "purpose"):
        table.add_column(column)
    for m in listing.backups:
        verified = "yes" if m.verified else (f"[red]FAILED[/red] ({m.verification.check})" if m.verification else "-")
        purpose = f"[yellow]SAFETY[/yellow] ({m.note})" if m.purpose == "safety" else "backup"
        table.add_row(
            m.id,
            shown_time(m.created_at, settings.zone),
            human_size(m.size),
            f"{m.physical.start_lsn}..{m.physical.end_lsn} ({m.physical.timeline})"
            if m.physical
            else str(len(m.tables)),
            m.encryption,
            verified,
            purpose,
        )
    out.print(table)
    for key, problem in listing.unreadable:
        err.print(f"[yellow]warning:[/yellow] unreadable manifest {key}: {problem}", highlight=False)
    for key in listing.orphans:
        err.print(f"[yellow]warning:[/yellow] {key} has no manifest: incomplete, not a backup", highlight=False)


def list_snapshots(given: Invocation, settings: Any, storage: Any, kind: Any, as_json: bool) -> None:
    from sppg_backup.display import human_size
    from sppg_backup.files.snapshots import list_snapshots as read_snapshots

    listing = given.run(read_snapshots, storage, kind)
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


def list_sets(given: Invocation, settings: Any, storage: Any, as_json: bool) -> None:
    from sppg_backup.full import system

    sets, unreadable = given.run(system.list_sets, storage)
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
