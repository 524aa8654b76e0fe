"""The deploy step: `sppg-backup deployments` writes or applies the deployments (per instance with --instances)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sppg_backup.cli.common import Invocation, app, err, out
from sppg_backup.settings import Settings, load_settings


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
        urls = given.run(crash_alert_urls, given.settings(), instances)
        names, told = given.run(deploy.apply, text, crash_after, urls)
        out.print(f"deployed {count} deployments", highlight=False)
        left = given.run(deploy.stale, text)
        if left:
            err.print(
                f"[yellow]warning:[/yellow] {len(left)} deployments of the pool are not in this deploy and still run "
                f"on their schedules: {', '.join(left[:6])}{' ...' if len(left) > 6 else ''}; delete the ones no "
                "longer wanted (prefect deployment delete NAME)",
                highlight=False,
                soft_wrap=True,
            )
        for name in names:
            out.print(f"automation '{name}': after {crash_after} s without a heartbeat; {told}", highlight=False)
    if write is None and not apply:
        print(text, end="")


def crash_alert_urls(settings: Settings, instances: Path | None) -> list[str]:
    """Who hears of a run whose worker died: every notification URL of these settings and of each instance's
    settings file that is on this host (each once)."""
    from sppg_backup.instances import read_instances

    found = [
        settings,
        *(load_settings(i.config) for i in (read_instances(instances) if instances else []) if i.config.is_file()),
    ]
    urls = [url for each in found for url in (*each.notify_urls, *each.notify_warning_urls, *each.notify_critical_urls)]
    return list(dict.fromkeys(urls))
