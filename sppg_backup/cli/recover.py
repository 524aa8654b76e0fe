"""`recover server`: a new host from the storage and the key alone (the recover-server flow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sppg_backup.cli.common import Invocation, app, given_time, out
from sppg_backup.settings import ENV_PREFIX

recover_app = typer.Typer(help="Bring a whole server back after a disaster.", no_args_is_help=True)
app.add_typer(recover_app, name="recover")


@recover_app.command("server")
def recover_server_command(
    ctx: typer.Context,
    storage: Annotated[
        str | None, typer.Option("--storage", help="The storage, or the DR region's replica (gs://... or file://...).")
    ] = None,
    identity: Annotated[Path | None, typer.Option("--identity", help="The age private key file.")] = None,
    set_id: Annotated[str | None, typer.Option("--set", help="A full-system backup id (default: the newest).")] = None,
    to: Annotated[str | None, typer.Option(help="Point-in-time recovery to this time (default: the newest).")] = None,
    from_dump: Annotated[bool, typer.Option("--from-dump", help="The set's dump, not point-in-time recovery.")] = False,
    app_dir: Annotated[Path | None, typer.Option(help="Where the application goes (default: where it was).")] = None,
    write_config: Annotated[Path, typer.Option(help="Where this host's settings file is written.")] = Path(
        "/etc/sppg-backup/config.toml"
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Fill the folders and start the stack.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """On a new host with Docker and the Compose tool: the newest complete full-system backup (its settings, files,
    configuration, images, database to the point in time), the stack started database first, the health URL."""
    import os

    given: Invocation = ctx.obj
    settings = given.settings()
    from sppg_backup.flows.recover_server import recover_server
    from sppg_backup.full.recover import RecoverRequest

    request = RecoverRequest(
        storage_url=storage or os.environ.get(ENV_PREFIX + "STORAGE_URL"),
        identity_file=str(identity.resolve()) if identity else None,
        set_id=set_id,
        to=given_time(to, "--to", settings.zone) if to else None,
        from_dump=from_dump,
        app_dir=str(app_dir.resolve()) if app_dir else None,
        write_config=str(write_config.resolve()),
        dry_run=dry_run,
        confirm=yes,
    )
    result = given.run(recover_server, request=request, json_failure={} if as_json else None)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    if dry_run:
        out.print("\n".join(["the plan (nothing was changed):", *result["plan"]]), highlight=False)
        return
    out.print(
        f"recovered from {result['set_id']} in {result['rto_seconds']:.0f} s: "
        f"health {result['health'] or 'not checked'}; settings in {result['settings_file']}. "
        "Now: DNS, then the load balancer (see the run's report).",
        highlight=False,
    )
