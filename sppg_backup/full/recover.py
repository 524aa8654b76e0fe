"""A new server from the storage and the key alone (the guide's scenarios 2 and 3): which full-system set, the
settings it was taken with, where each part goes, and the checks that this host has nothing of the old one."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import toml
from pydantic import BaseModel, ConfigDict, Field

from sppg_backup.errors import BackupError, CheckFailed, ConfigError, NotFoundError
from sppg_backup.forms import Text, WibTime
from sppg_backup.full.system import FullSet, check_parts, choose, list_sets
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage

DEFAULT_CONFIG = "/etc/sppg-backup/config.toml"
MARK = "# written by `sppg-backup recover server` from full-system backup "
STAGE = "# recovery: {stage} into {app_dir}"  # started, database (done up to the database), done
# Where APP_DIR may never be (storage is not trusted to say where files go): these folders or anything below them,
# fmt: off
SYSTEM_TREES = tuple(Path(p) for p in (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run", "/sbin", "/sys",
    "/usr", "/var/spool", "/var/lib/docker", "/var/lib/sppg-backup", "/var/lib/postgresql",
))
# and these folders themselves.
SYSTEM = {Path(p) for p in ("/", "/home", "/opt", "/srv", "/tmp", "/var", "/var/lib", "/mnt", "/media", "/data")}
# fmt: on
CHECKLIST = (
    "Point the DNS name of the ERP to this server's address (the guide's step 4), and lower its TTL until the old "
    "server is certainly gone.",
    "Put this server in the load balancer's backend and take the old one out (step 5).",
    "Tell the users the service was down and from when their data is back (the recovered-to time above).",
    "Start the scheduled backups here: `sppg-backup --config {config} serve` (or the systemd unit), and "
    "`sppg-backup wal stream` when point-in-time recovery is set up.",
    "Make a full-system backup of this server now: `sppg-backup --config {config} backup full`.",
)


class RecoverRequest(BaseModel):
    """What a recovery on a new host needs: the storage, the key, and optionally which set and to when."""

    model_config = ConfigDict(frozen=True)

    storage_url: Text = Field(default=None, description="The storage (or its replica in the DR region).")
    identity_file: Text = Field(default=None, description="The age private key file that opens the backups.")
    set_id: Text = Field(default=None, description="A full-system backup id; empty: the newest complete one.")
    to: WibTime = Field(default=None, description="Point-in-time recovery to this moment (WIB); empty: the newest.")
    from_dump: bool = Field(default=False, description="Restore the set's dump, not point-in-time recovery.")
    app_dir: Text = Field(default=None, description="Where the application goes; empty: where it was.")
    write_config: Text = Field(default=DEFAULT_CONFIG, description="Where this host's settings file is written.")
    dry_run: bool = Field(default=False, description="Only print the plan; nothing is changed.")
    confirm: bool = Field(default=False, description="Required: folders are filled and containers started.")


def choose_complete(storage: Storage, set_id: str | None) -> tuple[FullSet, list[str]]:
    """The set named, else the newest whose every part is in storage; the newer ones passed over, and why."""
    if set_id:
        full = choose(storage, set_id)
        whole(storage, full)
        return full, []
    sets, unreadable = list_sets(storage)
    passed = [f"{key}: {why}" for key, why in unreadable]
    for full in reversed(sets):
        try:
            whole(storage, full)
        except BackupError as exc:
            passed.append(f"{full.id}: {exc}")
            continue
        return full, passed
    if not sets:
        raise NotFoundError(f"no full-system backup in {storage.url}: is this the right storage URL?")
    raise NotFoundError(f"no complete full-system backup in {storage.url}: {'; '.join(passed)}")


# What a set's recorded settings may bring to a new host: what describes the system and its policies. Where this
# host keeps its own files (state, scratch, local copies, WAL spool, audit, metrics), which programs it runs
# (PG_BIN_DIR, DRILL_TEST_COMMAND), its credentials and other endpoints come from the host or the defaults:
# storage is not trusted to say what runs here or which folders are cleaned.
# fmt: off
FROM_THE_SET = frozenset((
    "database_url", "replica_urls", "replica_max_lag_hours", "local_retention_days", "cloud_retention_days",
    "compression", "compression_level", "encryption", "services", "db_container", "service_stop_timeout_seconds",
    "service_start_timeout_seconds", "age_recipients", "key_max_age_days", "timezone", "retries",
    "retry_delay_seconds", "lock_wait_timeout_seconds", "dump_timeout_seconds", "gcp_project", "cloudsql_instance",
    "cloudsql_timeout_seconds", "cloudsql_poll_seconds", "min_backup_size", "restore_jobs", "drill_checks",
    "max_backup_age_hours", "size_drop_ratio", "storage_alert_ratio", "bucket_quota_bytes", "uploads_dir",
    "config_paths", "app_dir", "docker_images", "health_url", "health_timeout_seconds", "files_retention_days",
    "files_keep_versions", "scheduled_flows", "pitr", "replication_slot", "wal_upload_interval_seconds",
    "wal_stall_minutes", "slot_max_retained_bytes", "base_max_age_days", "instance",
))
# fmt: on


def whole(storage: Storage, full: FullSet) -> None:
    """A set a server can come back from: a database backup and the application files, every part in storage."""
    lacking = [kind for kind in ("database", "application") if not any(p.ref or p.key for p in full.part(kind))]
    if lacking:
        raise CheckFailed("parts", f"full-system backup {full.id} has no {' and no '.join(lacking)} part")
    check_parts(storage, full)


def host_values(full: FullSet, given: Settings, request: RecoverRequest) -> dict[str, Any]:
    """The settings for this host: the set's (FROM_THE_SET only), then what this host sets itself (environment,
    config file), then the storage, key and folder of this recovery."""
    known = set(Settings.model_fields)
    values = {name: value for name, value in full.taken_with.items() if name in FROM_THE_SET & known}
    values |= {name: getattr(given, name) for name in given.model_fields_set if name in known}
    values["storage_url"] = request.storage_url or given.storage_url
    values["age_identity_file"] = request.identity_file or given.age_identity_file
    values["replica_urls"] = [url for url in values.get("replica_urls", []) if url != values["storage_url"]]
    if request.app_dir:
        values["app_dir"] = request.app_dir
    new_app = str(values.get("app_dir") or "")
    if full.app_dir and new_app and Path(new_app) != Path(full.app_dir):
        # what was inside the old folder is inside the new one
        values["config_paths"] = [_moved(p, full.app_dir, new_app) for p in values.get("config_paths", [])]
        if values.get("uploads_dir"):
            values["uploads_dir"] = _moved(str(values["uploads_dir"]), full.app_dir, new_app)
    return values


def _moved(path: str, old: str, new: str) -> str:
    return str(Path(new) / Path(path).relative_to(old)) if Path(path).is_relative_to(old) else path


def check_app_dir(app_dir: Path | None, recorded: str | None, earlier: bool = False) -> Path:
    """The application's folder on this host: absolute, not a system folder, empty or not there yet (or what an
    earlier try of this recovery put there)."""
    if app_dir is None:
        raise ConfigError(f"the set records no APP_DIR (it was {recorded}): give --app-dir")
    inside_system = app_dir in SYSTEM or any(app_dir.is_relative_to(tree) for tree in SYSTEM_TREES)
    if not app_dir.is_absolute() or ".." in app_dir.parts or inside_system:
        raise ConfigError(f"APP_DIR {app_dir} is not a folder the application may be restored into; give --app-dir")
    if app_dir.exists() and (not app_dir.is_dir() or any(app_dir.iterdir()) and not earlier):
        raise ConfigError(
            f"{app_dir} is not empty: this is not a new host (`sppg-backup restore full` restores onto a "
            "configured one), or give another --app-dir"
        )
    return app_dir


def config_inside(config_paths: list[str], app_dir: Path) -> tuple[list[str], list[str]]:
    """The configuration snapshot's paths restored with the application (inside APP_DIR) and those left for
    the engineer (elsewhere on the old host: storage does not say where files go outside the application)."""
    inside = [p for p in config_paths if Path(p).is_relative_to(app_dir)]
    return inside, [p for p in config_paths if p not in inside]


def env_value(env_file: Path, name: str) -> str | None:
    """`name`'s value in a Compose .env file (KEY=VALUE lines, optionally quoted)."""
    try:
        lines = env_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return value
    return None


def with_password(url: str, env_file: Path) -> str:
    """DATABASE_URL with the password the stack's .env gives its PostgreSQL (POSTGRES_PASSWORD, for the
    POSTGRES_USER or postgres), when the URL has none: a set records no secret."""
    from sppg_backup.db.postgres import parse

    target, params = parse(url)
    password = env_value(env_file, "POSTGRES_PASSWORD")
    user = env_value(env_file, "POSTGRES_USER") or "postgres"
    if params.get("password") or not password or target.user != user:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = f"{quote(target.user, safe='')}:{quote(password, safe='')}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Earlier:
    """How far an unfinished recovery of this set into this folder got: "started" (what it made is removed and
    it starts over) or "database" (files, images and database are back: the stack is started and checked)."""

    stage: str
    database: dict[str, Any]


def earlier_try(path: Path, set_id: str, app_dir: Path) -> Earlier | None:
    """The unfinished recovery of this set into `app_dir` whose settings file `path` is, if any; the file of a
    finished recovery, of one into another folder, or anyone else's is refused."""
    if not path.exists():
        return None
    if not path.is_file():
        raise ConfigError(f"--write-config {path} is not a file")
    try:
        head = path.read_text(errors="replace").splitlines()[:3]
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head[:1] != [MARK + set_id] or len(head) < 3:
        raise ConfigError(f"{path} exists: this is not a new host; give another --write-config, or move it away")
    if head[1] == STAGE.format(stage="done", app_dir=app_dir):
        raise ConfigError(f"{set_id} was recovered onto this host already ({path}): it is no longer a new host")
    for stage in ("started", "database"):
        if head[1] == STAGE.format(stage=stage, app_dir=app_dir):
            try:
                database = json.loads(head[2].removeprefix("# database: "))
            except ValueError:
                database = {}
            return Earlier(stage, database if isinstance(database, dict) else {})
    raise ConfigError(
        f"{path} records another recovery ({head[1].removeprefix('# recovery: ')}): run that one again with its "
        f"--app-dir, or remove what it made and {path}"
    )


def write_config(
    path: Path, values: dict[str, Any], set_id: str, stage: str, database: dict[str, Any] | None = None
) -> None:
    """This host's settings file (mode 0600: it holds the database password), marked with the set, how far its
    recovery got, and into which folder."""
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in values.items() if v is not None}
    checks: list[Any] = list(plain.get("drill_checks", []))
    plain["drill_checks"] = [c if isinstance(c, dict) else c.model_dump() for c in checks]
    header = f"{MARK}{set_id}\n{STAGE.format(stage=stage, app_dir=values.get('app_dir'))}\n"
    header += f"# database: {json.dumps(database or {})}\n"
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(header + toml.dumps(plain))
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the settings file {path}: {exc.strerror or exc}; give --write-config"
        ) from None


@dataclass(frozen=True)
class Plan:
    """What a recovery will do, shown by --dry-run and kept in the report."""

    set_id: str
    set_time: datetime
    app_dir: str
    config_restored: list[str]
    config_left: list[str]
    images: list[str]
    compose_file: str | None
    database_service: str | None
    database: str  # how the database comes back, in words
    pitr: bool
    health_url: str | None
    settings_file: str
    passed_over: list[str]
    earlier: str | None = None  # how far an unfinished try of this recovery got (Earlier.stage)

    def lines(self) -> list[str]:
        said = [
            f"full-system backup {self.set_id} (taken {self.set_time.isoformat()})",
            f"application files into {self.app_dir}",
            f"configuration: {', '.join(self.config_restored) or 'nothing inside APP_DIR'}",
            f"images: {', '.join(self.images) or 'none'}",
            f"database: {self.database}",
            f"stack: {self.compose_file or 'no Compose file'}"
            + (f", database service {self.database_service} first" if self.database_service else ""),
            f"health check: {self.health_url or 'HEALTH_URL not set'}",
            f"settings written to {self.settings_file}",
        ]
        said += [f"left for you: {path} (outside APP_DIR)" for path in self.config_left]
        said += [f"passed over: {why}" for why in self.passed_over]
        if self.earlier == "started":
            said.append("an earlier try of this recovery is removed first (its stack, its application folder)")
        elif self.earlier == "database":
            said.append("an earlier try brought back files, images and database: only the stack is started")
        return said
