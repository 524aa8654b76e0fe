"""The deploy step: `sppg-backup deployments` writes or applies the deployments (per instance with --instances)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sppg_backup.cli.common import Invocation, app, out


@app.command("deployments")
def deployments_command(
    ctx: typer.Context,
    instances: Annotated[
        Path | None,
        typer.Option("--instances", help="TOML file of [instances.<name>] tables: each gets its own deployments."),
    ] = None,
    write: Annotated[Path | None, typer.Option("--write", help="Write the deployments file here.")] = None,
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Create the pool, deploy them (prefect deploy) and apply the automations."),
    ] = False,
    crash_after: Annotated[
        int, typer.Option("--crash-after", help="Seconds without a heartbeat before a run is marked Crashed.")
    ] = 300,
) -> None:
    """Every deployment of prefect.yaml, once per instance with --instances: written (--write), applied to the
    server of PREFECT_API_URL (--apply), or printed."""
    given: Invocation = ctx.obj
    from sppg_backup.deployments import apply as deploy

    text, count = given.run(deploy.deployments_file, instances)
    if write is not None:
        given.run(write.write_text, text)
        out.print(f"wrote {count} deployments to {write}", highlight=False)
    if apply:
        settings = given.settings()
        urls = [*settings.notify_urls, *settings.notify_warning_urls, *settings.notify_critical_urls]
        names = given.run(deploy.apply, text, crash_after, urls)
        out.print(f"deployed {count} deployments", highlight=False)
        told = f"{len(urls)} notification URLs are told" if urls else "nobody is told (no NOTIFY_*_URLS here)"
        for name in names:
            out.print(f"automation '{name}': after {crash_after} s without a heartbeat; {told}", highlight=False)
    if write is None and not apply:
        print(text, end="")
