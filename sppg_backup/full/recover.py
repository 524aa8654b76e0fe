"""A new server from the storage and the key alone (the guide's scenarios 2 and 3): which full-system set, the
settings it was taken with, where each part goes, and the checks that this host has nothing of the old one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import toml
from pydantic import BaseModel, ConfigDict, Field

from sppg_backup.errors import BackupError, ConfigError, NotFoundError
from sppg_backup.forms import Text, WibTime
from sppg_backup.full.system import FullSet, check_parts, choose, list_sets
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage

DEFAULT_CONFIG = "/etc/sppg-backup/config.toml"
MARK = "# written by `sppg-backup recover server` from full-system backup "
IN_PROGRESS, DONE = "# recovery: in progress", "# recovery: done"
# Folders a set's recorded APP_DIR must never be: storage is not trusted to say where files go.
SYSTEM = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run", "/sbin"}
SYSTEM |= {"/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib"}
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
        check_parts(storage, full)
        return full, []
    sets, unreadable = list_sets(storage)
    passed = [f"{key}: {why}" for key, why in unreadable]
    for full in reversed(sets):
        try:
            check_parts(storage, full)
        except BackupError as exc:
            passed.append(f"{full.id}: {exc}")
            continue
        return full, passed
    if not sets:
        raise NotFoundError(f"no full-system backup in {storage.url}: is this the right storage URL?")
    raise NotFoundError(f"no complete full-system backup in {storage.url}: {'; '.join(passed)}")


def host_values(full: FullSet, given: Settings, request: RecoverRequest) -> dict[str, Any]:
    """The settings for this host: the set's, then what this host sets itself (environment, config file), then
    the storage and key of this recovery."""
    known = set(Settings.model_fields)
    values = {name: value for name, value in full.taken_with.items() if name in known}
    values |= {name: getattr(given, name) for name in given.model_fields_set if name in known}
    values["storage_url"] = request.storage_url or given.storage_url
    values["age_identity_file"] = request.identity_file or given.age_identity_file
    values["replica_urls"] = [url for url in values.get("replica_urls", []) if url != values["storage_url"]]
    if request.app_dir and full.app_dir and request.app_dir != full.app_dir:
        values["app_dir"] = request.app_dir  # and what was inside the old one is inside the new one
        values["config_paths"] = [_moved(p, full.app_dir, request.app_dir) for p in values.get("config_paths", [])]
        if values.get("uploads_dir"):
            values["uploads_dir"] = _moved(str(values["uploads_dir"]), full.app_dir, request.app_dir)
    elif request.app_dir:
        values["app_dir"] = request.app_dir
    return values


def _moved(path: str, old: str, new: str) -> str:
    return str(Path(new) / Path(path).relative_to(old)) if Path(path).is_relative_to(old) else path


def check_app_dir(app_dir: Path | None, recorded: str | None, rerun: bool = False) -> Path:
    """The application's folder on this host: absolute, not a system folder, empty or not there yet (or what an
    earlier try of this recovery put there)."""
    if app_dir is None:
        raise ConfigError(f"the set records no APP_DIR (it was {recorded}): give --app-dir")
    if not app_dir.is_absolute() or str(app_dir).rstrip("/") in SYSTEM or ".." in app_dir.parts:
        raise ConfigError(f"APP_DIR {app_dir} is not a folder the application may be restored into; give --app-dir")
    if app_dir.exists() and (not app_dir.is_dir() or any(app_dir.iterdir()) and not rerun):
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


def earlier_try(path: Path, set_id: str) -> bool:
    """Whether `path` is the settings file of a recovery of this set that did not finish (a rerun cleans what it
    made); a file of a finished recovery, or anyone else's, is refused."""
    if not path.exists():
        return False
    head = path.read_text(errors="replace").splitlines()[:2]
    if head == [MARK + set_id, IN_PROGRESS]:
        return True
    if head[:1] == [MARK + set_id]:
        raise ConfigError(f"{set_id} was recovered onto this host already ({path}): it is no longer a new host")
    raise ConfigError(f"{path} exists: this is not a new host; give another --write-config, or move it away")


def write_config(path: Path, values: dict[str, Any], set_id: str, done: bool = False) -> None:
    """This host's settings file (mode 0600: it holds the database password), marked with the set and whether
    the recovery finished."""
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in values.items() if v is not None}
    checks: list[Any] = list(plain.get("drill_checks", []))
    plain["drill_checks"] = [c if isinstance(c, dict) else c.model_dump() for c in checks]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(f"{MARK}{set_id}\n{DONE if done else IN_PROGRESS}\n{toml.dumps(plain)}")
    os.replace(temporary, path)


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
    rerun: bool = False  # an earlier try of this recovery is cleaned first

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
        if self.rerun:
            said.append("an earlier try of this recovery is removed first (its stack, its application folder)")
        return said
