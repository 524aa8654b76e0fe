"""Cloud SQL commands: cloudsql backups, cloudsql restore, cloudsql clone (each runs its flow)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sppg_backup.cli.common import Invocation, app, given_time, out
from sppg_backup.display import shown_time

cloudsql_app = typer.Typer(
    help="A production database on Cloud SQL (CLOUDSQL_INSTANCE, GCP_PROJECT): backups, restore, clone.",
    no_args_is_help=True,
)
app.add_typer(cloudsql_app, name="cloudsql")


@cloudsql_app.command("backups")
def backups_command(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The instance's backups, newest first (`gcloud sql backups list`)."""
    given: Invocation = ctx.obj
    settings = given.settings()
    from sppg_backup.flows.cloudsql import cloudsql_backups

    runs = given.run(cloudsql_backups)
    if as_json:
        print(json.dumps(runs, indent=2, default=str))
        return
    for run in runs:
        started = shown_time(run["started"], settings.zone) if run["started"] else "-"
        out.print(f"{run['id']}  {started}  {run['status']}  {run['kind']}  {run['description']}", highlight=False)


@cloudsql_app.command("restore")
def restore_command(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(help="The backup run id (`cloudsql backups`).")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the instance's data is replaced.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore a backup onto the instance and wait until Cloud SQL is done (`gcloud sql backups restore`)."""
    given: Invocation = ctx.obj
    settings = given.settings()
    from sppg_backup.flows.cloudsql import cloudsql_restore

    result = given.run(cloudsql_restore, backup_id=backup_id, confirm=yes)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(f"backup {backup_id} restored onto {settings.cloudsql_instance} (operation {result['name']})")


@cloudsql_app.command("clone")
def clone_command(
    ctx: typer.Context,
    point_in_time: Annotated[str, typer.Option("--point-in-time", help="ISO 8601; without a zone, in TIMEZONE.")],
    name: Annotated[str, typer.Option("--name", help="The new instance's name.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Clone the instance as it was at a point in time into a new one, and wait until Cloud SQL is done."""
    given: Invocation = ctx.obj
    settings = given.settings()
    moment = given_time(point_in_time, "--point-in-time", settings.zone)
    from sppg_backup.flows.cloudsql import cloudsql_clone

    result = given.run(cloudsql_clone, name=name, point_in_time=moment)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(
        f"{settings.cloudsql_instance} cloned to {name} as it was at {shown_time(moment, settings.zone)} "
        f"(operation {result['name']})",
        highlight=False,
    )
