"""Operations commands: config show, status, prune, replicate, rekey, keygen, serve, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sppg_backup.cli.common import Invocation, app, config_app, err, existing_storage, fail, out
from sppg_backup.errors import ConfigError
from sppg_backup.settings import ENV_PREFIX, masked


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings, secrets masked."""
    given: Invocation = ctx.obj
    settings = given.settings()
    for name, value in masked(settings).items():
        out.print(f"{ENV_PREFIX}{name.upper()} = {json.dumps(value)}", highlight=False)


@app.command("status")
def status_command(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Backup health (the check-backup-health flow): exit 0 when healthy, 1 naming each active alert."""
    given: Invocation = ctx.obj
    given.settings()
    from sppg_backup.flows.check_backup_health import check_backup_health

    result = given.run(check_backup_health)
    if as_json:
        print(json.dumps(result, indent=2))
    elif result["healthy"]:
        out.print("healthy: a recent backup, no size drop, verification passing, storage below its limit")
    for alert in result["alerts"]:
        if not as_json:
            err.print(f"[red]ALERT[/red] {alert['name']}: {alert['summary']}", highlight=False, soft_wrap=True)
    if not result["healthy"]:
        raise typer.Exit(1)


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")] = False,
    kind: Annotated[str, typer.Option(help="db, or files (needs AGE_IDENTITY_FILE to read snapshots).")] = "db",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Delete backups past retention (db: local 30 days, cloud 365 days, never the newest good backup;
    files: 90 days, but the last 5 versions of every file stay)."""
    given: Invocation = ctx.obj
    given.run(existing_storage, given.settings())
    if kind == "files":
        from sppg_backup.flows.prune_file_snapshots import prune_file_snapshots

        files = given.run(prune_file_snapshots, dry_run=dry_run)
        if as_json:
            print(json.dumps(files, indent=2))
            return
        verb = "would delete" if dry_run else "deleted"
        out.print(
            f"files: {verb} {len(files['deleted_snapshots'])} snapshots and {len(files['deleted_objects'])} "
            f"unreferenced objects; kept {len(files['kept_snapshots'])} snapshots",
            highlight=False,
        )
        for snap_id in files["deleted_snapshots"]:
            out.print(f"  {verb} {snap_id}", highlight=False)
        return
    if kind != "db":
        fail(ConfigError(f"unknown kind {kind!r}: use db or files"))
    from sppg_backup.flows.prune_backups import prune_backups

    results = given.run(prune_backups, dry_run=dry_run)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for result in results:
        what = {"db": "dumps", "base": "base backups", "wal": "WAL files"}[result["kind"]]
        if result["kind"] == "wal" and not (result["deleted"] or result["kept"]):
            continue  # no WAL archive: point-in-time recovery is not set up
        out.print(f"{result['location']} {what}: {verb} {len(result['deleted'])}, kept {len(result['kept'])}")
        if result["kind"] == "wal":
            if result["deleted"]:
                out.print(f"  {verb} {result['deleted'][0]} .. {result['deleted'][-1]} ({result['reasons']['wal']})")
            continue
        for backup_id in result["deleted"]:
            out.print(f"  {verb} {backup_id} ({result['reasons'][backup_id]})", highlight=False)


@app.command("replicate")
def replicate_command(
    ctx: typer.Context,
    verify: Annotated[
        bool, typer.Option("--verify", help="Read every copy on the replicas back; copy a damaged one again.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Copy to each replica (REPLICA_URLS) what it lacks, checked by size and sha256, manifests last. Never
    deletes: only prune deletes there, what it deleted from the storage."""
    given: Invocation = ctx.obj
    settings = given.settings()
    if not settings.replica_urls:
        fail(ConfigError("no replicas: set SPPG_BACKUP_REPLICA_URLS (storage URLs in another region)"))
    given.run(existing_storage, settings)
    from sppg_backup.flows.replicate_backups import replicate_backups

    result = given.run(replicate_backups, verify=verify)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    for replica in result["replicas"]:
        out.print(
            f"{replica['replica']}: {len(replica['copied'])} copied, {len(replica['repaired'])} copied again "
            f"({replica['bytes_copied']} bytes), {replica['checked']} objects in the storage; it has them all",
            highlight=False,
        )


@app.command("rekey")
def rekey_command(
    ctx: typer.Context,
    recipients: Annotated[str, typer.Option("--recipients", help="The new age public keys, comma-separated.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be rewritten; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every encrypted backup is rewritten.")] = False,
    verify_identity: Annotated[
        Path | None, typer.Option("--verify-identity", help="The new private key: read every object back with it.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rotate the encryption key: every encrypted object on the storage, the local copies and the replicas is
    re-encrypted to --recipients with the current key (AGE_IDENTITY_FILE); run again after a kill, it goes on."""
    given: Invocation = ctx.obj
    settings = given.settings()
    given.run(existing_storage, settings)
    from sppg_backup.flows.rekey_backups import rekey_backups

    verify = str(verify_identity.resolve()) if verify_identity else None
    result = given.run(rekey_backups, recipients=recipients, dry_run=dry_run, confirm=yes, verify_identity=verify)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    for place in result["storages"]:
        out.print(
            f"{place['location']}: {verb} {len(place['rewritten'])} objects ({len(place['already'])} done before, "
            f"{place['manifests']} manifests updated)",
            highlight=False,
        )
    if result["verified"]:
        out.print("every object reads back whole with the new key", highlight=False)
    if not dry_run:
        out.print(
            "now set SPPG_BACKUP_AGE_RECIPIENTS to the new keys and SPPG_BACKUP_AGE_IDENTITY_FILE to the new "
            "private key (if not yet)",
            highlight=False,
        )


@app.command("keygen")
def keygen(
    ctx: typer.Context, path: Annotated[Path, typer.Argument(help="Where to write the private key (age format).")]
) -> None:
    """Make an age key pair; put the printed public key in SPPG_BACKUP_AGE_RECIPIENTS."""
    given: Invocation = ctx.obj
    from sppg_backup.stream.crypto import generate_key_file

    if path.exists():
        fail(ConfigError(f"{path} exists; not overwriting a key"))
    out.print(given.run(generate_key_file, path))


@app.command("serve")
def serve(ctx: typer.Context) -> None:
    """Serve every deployment (schedules included) from this process, without a work pool; with
    SPPG_BACKUP_PITR set, the WAL receiver (`wal stream`) runs beside them."""
    given: Invocation = ctx.obj
    from sppg_backup.deployments.serve import serve_all

    config = given.config
    pitr = given.settings().pitr
    given.run(serve_all, str(config) if config else None, pitr)  # a missing prefect.yaml is one line


@app.command("demo")
def demo(
    ctx: typer.Context,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its cluster, keys and backups.")] = Path(".demo"),
    scale: Annotated[int, typer.Option(help="Sample data size (1 is about 2 MB).")] = 5,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the sample database running afterwards.")] = False,
) -> None:
    """Throwaway PostgreSQL with a sample ERP database, file:// storage, a demo key: back it up and list it."""
    given: Invocation = ctx.obj
    from sppg_backup.sandbox.demo import run_demo

    given.run(run_demo, workdir.resolve(), scale, out, keep)
