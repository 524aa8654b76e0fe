"""Tasks of recover-server: the plan from storage, the settings, the configuration, the stack, the database."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.display import shown_time
from sppg_backup.errors import BackupError, CheckFailed, ConfigError
from sppg_backup.files import restore, snapshots
from sppg_backup.full import recover
from sppg_backup.full.recover import Plan, RecoverRequest
from sppg_backup.full.system import FullSet
from sppg_backup.ops import compose, containers, report_files
from sppg_backup.physical import feed, in_container, pitr, replace
from sppg_backup.settings import Settings, load_settings
from sppg_backup.storage import open_storage
from sppg_backup.tasks.common import destinations
from sppg_backup.tasks.credentials import credentials_for
from sppg_backup.tasks.files import identities
from sppg_backup.tasks.reporting import Entry, tell
from sppg_backup.tasks.verify import identities_for


@task(name="read-catalog", cache_policy=NO_CACHE, timeout_seconds=600)
def make_plan(given: Settings, request: RecoverRequest) -> tuple[FullSet, Settings, Plan, dict[str, Any]]:
    """0. The newest complete full-system backup in storage (or the one named), the settings it was taken with,
    and where everything goes (and what an unfinished try of it brought back); refused on a host that already has
    the application."""
    if not request.storage_url:
        raise ConfigError("give the storage to recover from: --storage gs://bucket/prefix (or the DR replica)")
    if not request.identity_file or not Path(request.identity_file).is_file():
        raise ConfigError(f"give the age private key file with --identity (got {request.identity_file or 'none'})")
    storage = open_storage(request.storage_url, credentials_for(given, request.storage_url), given.gcp_project)
    if storage.folder is not None and not storage.folder.is_dir():
        raise ConfigError(f"storage directory {storage.folder} does not exist; check --storage")
    full, passed = recover.choose_complete(storage, request.set_id)
    check_key(storage, full, Path(request.identity_file))
    values = recover.host_values(full, given, request)
    try:
        settings = Settings(**values)
    except ValueError as exc:
        raise ConfigError(f"the settings of {full.id} do not load here: {str(exc).splitlines()[0]}") from None
    settings_file = Path(request.write_config or recover.DEFAULT_CONFIG).resolve()
    app_dir = recover.check_app_dir(settings.app_dir, full.app_dir, earlier=True)  # the folder's name first
    earlier = recover.earlier_try(settings_file, full.id, app_dir)
    app_dir = recover.check_app_dir(settings.app_dir, full.app_dir, earlier is not None)
    if earlier is None:
        check_free()
    inside, left = recover.config_inside(settings.config_paths, app_dir)
    compose_file = compose.find_file(inside)
    if compose_file is not None:
        compose.tool()  # installed, before anything is written
    database, use_pitr = database_plan(settings, storage, full, request)
    if earlier is not None and earlier.stage == "database" and earlier.database.get("plan") != database:
        earlier = recover.Earlier("started", {})  # that try brought back another database: this one starts over
    if use_pitr and compose_file is None:
        raise ConfigError(
            "point-in-time recovery runs in the database's container, and CONFIG_PATHS names no Compose file inside "
            "APP_DIR: recover with --from-dump (the dump goes to DATABASE_URL)"
        )
    plan = Plan(
        set_id=full.id,
        set_time=full.created_at,
        app_dir=str(app_dir),
        config_restored=inside,
        config_left=left,
        images=full.images,
        compose_file=str(compose_file) if compose_file else None,
        database_service=settings.db_container if compose_file else None,  # else known once the file is back
        database=database,
        pitr=use_pitr,
        health_url=settings.health_url,
        settings_file=str(settings_file),
        passed_over=passed,
        earlier=earlier.stage if earlier else None,
    )
    log = get_run_logger()
    for line in plan.lines():
        log.info("plan: %s", line)
    if not request.dry_run and not request.confirm:
        raise CheckFailed("confirmation", f"recovering {full.id} onto this host needs --yes (confirm=true)")
    return full, settings, plan, earlier.database if earlier else {}


def check_key(storage: Any, full: FullSet, identity_file: Path) -> None:
    """The key opens the set (its database backup's recipients), before anything is written."""
    from sppg_backup.db.catalog import read_manifest
    from sppg_backup.stream import crypto

    database = read_manifest(storage, "db", full.part("database")[0].ref or "")
    ours = {str(key.to_public()) for key in crypto.load_identities(identity_file)}
    if database.recipients and not ours & set(database.recipients):
        raise ConfigError(
            f"--identity {identity_file}: its key ({', '.join(sorted(ours))[:24]}...) is not one {full.id} was "
            f"encrypted to ({', '.join(database.recipients)[:24]}...); give the matching private key (after a key "
            "rotation, the new one)"
        )


def database_plan(settings: Settings, storage: Any, full: FullSet, request: RecoverRequest) -> tuple[str, bool]:
    """How the database comes back: point-in-time recovery when it was set up (to --to, else the newest WAL),
    else the set's dump."""
    dump = full.part("database")[0].ref
    if not settings.pitr or request.from_dump:
        if request.to is not None:
            raise ConfigError("--to needs point-in-time recovery (PITR was not set up, or --from-dump was given)")
        return f"the set's dump {dump}", False
    window = pitr.window(storage)
    if not window.bases:
        if request.to is not None:
            raise ConfigError(f"--to: no base backup in {storage.url} to recover from")
        return f"the set's dump {dump} (no base backup in storage)", False
    manifest = pitr.choose(storage, request.to, settings.zone)
    to = shown_time(request.to, settings.zone) if request.to else "the newest WAL in storage"
    return f"point-in-time recovery to {to} from base backup {manifest.id}", True


@task(name="restore-config", cache_policy=NO_CACHE)
def restore_config(settings: Settings, full: FullSet, plan: Plan) -> int:
    """3. The configuration snapshot of the set (the .env among it) over the application's files."""
    parts = full.part("config")
    if not parts or not parts[0].ref or not plan.config_restored:
        get_run_logger().warning("the set has no configuration snapshot inside APP_DIR: the application's are kept")
        return 0
    storage = destinations(settings).storage
    snap = snapshots.choose(storage, "config", parts[0].ref, None)
    app_dir = Path(plan.app_dir)
    done = 0
    for path in plan.config_restored:
        name = Path(path).relative_to(app_dir).as_posix()
        result = restore.restore(storage, snap, identities(settings), app_dir, name if name != "." else None, True)
        done += result.files
    get_run_logger().info("configuration: %d files of %s restored into %s", done, snap.id, app_dir)
    return done


@task(name="begin", cache_policy=NO_CACHE, timeout_seconds=900)
def begin(settings: Settings, plan: Plan) -> None:
    """The settings file marked "started" first, so that a rerun after a kill knows what it made; what an earlier
    try of this recovery made (its stack with its volumes, then its application files) goes."""
    if plan.earlier == "started":
        if plan.compose_file and Path(plan.compose_file).is_file():
            try:
                compose.run(compose.Stack.read(Path(plan.compose_file)), "down", "-v", "--remove-orphans")
            except BackupError as exc:
                raise CheckFailed(
                    "cleanup",
                    f"the earlier try's stack cannot be removed ({exc}); remove it by hand "
                    f"(docker compose -f {plan.compose_file} down -v) and run again",
                ) from None
        pitr.remove(Path(plan.app_dir), created=False)
        get_run_logger().info("removed what an earlier try of this recovery made")
    _write(settings, plan, settings.database_url, "started")


def _write(
    settings: Settings, plan: Plan, database_url: str, stage: str, database: dict[str, Any] | None = None
) -> Settings:
    values = {name: getattr(settings, name) for name in settings.model_fields_set | {"storage_url", "app_dir"}}
    values["database_url"] = database_url
    path = Path(plan.settings_file)
    recover.write_config(path, values, plan.set_id, stage, database)
    return load_settings(path)


@task(name="write-settings", cache_policy=NO_CACHE, timeout_seconds=120)
def write_settings(settings: Settings, plan: Plan, stage: str, database: dict[str, Any] | None = None) -> Settings:
    """This host's settings file: the set's settings, the database password from the restored .env, and how
    far the recovery got."""
    compose_file = Path(plan.compose_file) if plan.compose_file else None
    env_file = compose_file.parent / ".env" if compose_file else Path(plan.app_dir) / ".env"
    written = _write(settings, plan, recover.with_password(settings.database_url, env_file), stage, database)
    get_run_logger().info("settings of %s written to %s (%s)", plan.set_id, plan.settings_file, stage)
    return written


def stack_of(plan: Plan) -> compose.Stack:
    if plan.compose_file is None:
        raise ConfigError("no Compose file among CONFIG_PATHS: the stack cannot be started")
    return compose.Stack.read(Path(plan.compose_file))


@task(name="database-service", cache_policy=NO_CACHE, timeout_seconds=900)
def database_service(settings: Settings, plan: Plan, start: bool) -> str | None:
    """5. The database's service, created first (started too for a dump restore); None: not in the stack."""
    if plan.compose_file is None:
        return None
    stack = stack_of(plan)
    service = stack.database(settings.db_container)
    if service is None:
        if plan.pitr:
            raise ConfigError(f"no database service in {stack.file}: set DB_CONTAINER, or recover with --from-dump")
        get_run_logger().warning("no database service in %s: the dump goes to DATABASE_URL", stack.file)
        return None
    compose.run(stack, "up", "-d" if start else "--no-start", "--no-deps", service)
    get_run_logger().info("database service %s %s", service, "started" if start else "created")
    return service


@task(name="recover-in-container", cache_policy=NO_CACHE)  # DUMP_TIMEOUT_SECONDS bounds the wait
def recover_in_container(settings: Settings, plan: Plan, service: str, to: datetime | None) -> dict[str, Any]:
    """5. The base backup into the database container's empty volume, its WAL beside the data, the container's
    own server recovering to `to` (else the newest WAL) and promoted; then its recovery settings removed."""
    storage = destinations(settings).storage
    container = compose.container_of(containers.connect(), stack_of(plan), service)
    volume = in_container.volume_of(container)
    manifest = pitr.choose(storage, to, settings.zone)
    keys = identities_for(settings, manifest)
    log = get_run_logger()
    try:
        pitr.unpack_base(storage, manifest, keys, volume.data)
        wal_plan = pitr.plan_wal(storage, manifest, keys, volume.data, volume.folder, to is None)
        tools = settings.pg_bin_dir or Path("/usr/lib/postgresql/none")  # pg_waldump, when the host has it
        stored = set(wal_plan.segments)
        pitr.check_gaps(storage, manifest, keys, volume.data, volume.folder, to, tools, settings.zone, stored)
        pitr.configure(volume.data, volume.folder, to, None, volume.folder_inside)
        replace.own(volume.data, volume.uid, volume.gid)
        since = int(time.time()) - 1
        policy = container.attrs["HostConfig"].get("RestartPolicy") or {"Name": "no"}
        container.update(restart_policy={"Name": "no"})  # a server that fails its recovery is not started again
        with feed.Feed(storage, wal_plan.segments, keys, volume.folder, volume.owner) as feeding:
            container.start()
            try:
                said = in_container.wait_recovered(container, since, settings.dump_timeout_seconds, feeding.check)
            except CheckFailed:
                feeding.check()  # the cause, when fetching failed
                raise
        container.stop(timeout=settings.service_stop_timeout_seconds)
        in_container.finish(volume)
        container.update(restart_policy=policy)
    except BaseException:
        with contextlib.suppress(Exception):
            container.stop(timeout=settings.service_stop_timeout_seconds)
        in_container.empty(volume)  # a rerun starts from an empty volume again
        raise
    container.start()
    reached = to or in_container.recovered_to(said)
    log.info("recovered in %s with %d WAL segments to %s", service, len(feeding.fetched), reached)
    return {
        "base_backup_id": manifest.id,
        "wal_files": len(feeding.fetched),
        "recovered_to": reached.astimezone(UTC).isoformat() if reached else None,
    }


@task(name="start-stack", cache_policy=NO_CACHE, timeout_seconds=1800)
def start_stack(settings: Settings, plan: Plan) -> list[str]:
    """6. Start the rest of the stack from the restored Compose file."""
    stack = stack_of(plan)
    compose.run(stack, "up", "-d")
    names = [c.name for c in containers.connect().containers.list() if c.labels.get(containers.COMPOSE_SERVICE)]
    get_run_logger().info("stack started: %s", ", ".join(sorted(names)))
    return sorted(names)


def rpo_seconds(began: datetime, recovered_to: str | None) -> float | None:
    """How much before this recovery began the recovered data ends: what was written after it is lost."""
    if not recovered_to:
        return None
    return round((began - datetime.fromisoformat(recovered_to)).total_seconds(), 1)


def check_free() -> None:
    """Nothing of a Compose stack on this engine already (a new host), before anything is written."""
    client = containers.connect()
    running = [c.name for c in client.containers.list(all=True) if c.labels.get(containers.COMPOSE_SERVICE)]
    if running:
        raise ConfigError(
            f"this Docker engine already runs a Compose stack ({', '.join(sorted(running)[:3])}): this is not a "
            "new host; `sppg-backup restore full` restores onto a configured one"
        )


@task(name="report-recovery", cache_policy=NO_CACHE)
def report_recovery(
    settings: Settings, plan: Plan | None, result: dict[str, Any] | None, error: BaseException | None = None
) -> None:
    told = report_files.recovery(plan, result, error, settings.zone)
    subject = plan.set_id if plan is not None else "-"
    details = {"error": str(error)} if error else {"rto_seconds": result["rto_seconds"] if result else None}
    entry = Entry("recover.server", subject, "failed" if error else "ok", details, to_storage=False)
    tell(settings, "recover-server", told, entry)
