"""One Settings object, read from SPPG_BACKUP_* variables and an optional TOML file."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from sppg_backup.errors import ConfigError

ENV_PREFIX = "SPPG_BACKUP_"
INSTANCE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
# What an instance keeps apart from the others of the same install: its catalog in storage (and on the replicas), its
# local copies, its state. Each gets the instance's name as a last folder (unless it already ends with it).
INSTANCE_PLACES = ("storage_url", "replica_urls", "local_dir", "state_dir", "wal_dir")
CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SmokeCheck(BaseModel):
    """A query run against a restored database and the value its first column must have."""

    model_config = ConfigDict(frozen=True)
    name: str
    sql: str
    expect: str


class Settings(BaseSettings):
    """Everything the flows need; validated once at start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # One ERP SPPG instance of several backed up from one install (see `sppg-backup deployments --instances`).
    instance: str | None = None
    database_url: str = "postgresql://postgres@localhost:5432/erp_sppg"
    storage_url: str = "file:///var/lib/sppg-backup/storage"
    replica_urls: CommaList = []  # copies of the storage in another region (file:// or gs://), kept by replicate
    replica_max_lag_hours: float = Field(2, gt=0)  # alert: a replica lacks something made longer ago than this
    local_dir: Path | None = Path("/backups")
    local_retention_days: int = Field(30, ge=1)
    cloud_retention_days: int = Field(365, ge=1)
    compression: Literal["zstd", "gzip"] = "zstd"
    compression_level: int | None = Field(None, ge=1, le=19)
    encryption: bool = True
    services: CommaList = []
    db_container: str | None = None  # the database's container (name or Compose service): `restore pitr --replace`
    service_stop_timeout_seconds: int = Field(30, ge=0)
    service_start_timeout_seconds: int = Field(120, ge=1)
    age_recipients: CommaList = []
    age_identity_file: Path | None = None
    key_max_age_days: float = Field(365, gt=0)  # alert: the newest key in AGE_RECIPIENTS is in use longer than this
    notify_urls: CommaList = []  # apprise URLs told every outcome (successes too)
    notify_warning_urls: CommaList = []  # told warnings and critical failures only (e.g. Slack)
    notify_critical_urls: CommaList = []  # told critical failures only (e.g. an SMS gateway)
    metrics_file: Path | None = None
    pushgateway_url: str | None = None
    audit_log: Path | None = None
    timezone: str = "Asia/Jakarta"
    pg_bin_dir: Path | None = None
    retries: int = Field(3, ge=0)
    retry_delay_seconds: float = Field(10.0, ge=0)
    lock_wait_timeout_seconds: int = Field(300, ge=1)
    wait_for_other_run_minutes: float = Field(240, ge=0)  # another run on the same database or catalog: then fail
    dump_timeout_seconds: int = Field(6 * 3600, ge=60)
    gcp_credentials_block: str | None = None
    gcp_service_account_file: Path | None = None
    gcp_project: str | None = None
    # A production database on Cloud SQL: its instance, and the Admin API's address (a private endpoint).
    cloudsql_instance: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{0,97}$")
    cloudsql_api_url: str | None = None  # default https://sqladmin.googleapis.com/
    cloudsql_timeout_seconds: float = Field(3600, gt=0)  # an operation still running after this is a failed run
    cloudsql_poll_seconds: float = Field(5, gt=0)
    min_backup_size: int = Field(1 << 20, ge=0)
    verify_database_url: str | None = None
    scratch_dir: Path | None = None
    restore_jobs: int = Field(2, ge=1)
    drill_checks: list[SmokeCheck] = [
        SmokeCheck(name="users exist", sql="SELECT count(*) > 0 FROM users", expect="true"),
    ]
    drill_test_command: str | None = None
    drill_test_timeout_seconds: int = Field(1800, ge=1)
    max_backup_age_hours: float = Field(25, gt=0)
    size_drop_ratio: float = Field(0.5, gt=0, lt=1)
    storage_alert_ratio: float = Field(0.8, gt=0, le=1)
    bucket_quota_bytes: int | None = Field(None, gt=0)
    uploads_dir: Path | None = Path("/opt/erp-sppg/uploads")
    config_paths: CommaList = [
        "/opt/erp-sppg/docker-compose.prod.yml",
        "/opt/erp-sppg/.env",
        "/opt/erp-sppg/nginx",
    ]
    app_dir: Path | None = Path("/opt/erp-sppg")
    docker_images: CommaList = ["erp-sppg-backend:latest", "erp-sppg-web:latest"]
    health_url: str | None = None
    health_timeout_seconds: int = Field(120, ge=1)
    files_retention_days: int = Field(90, ge=1)
    files_keep_versions: int = Field(5, ge=1)
    state_dir: Path = Path("/var/lib/sppg-backup/state")
    scheduled_flows: CommaList = ["backup-database", "verify-backup"]
    target_password: str | None = None  # for a restore target on another server or login than DATABASE_URL
    restore_setid_bits: bool = False  # setuid/setgid bits read from storage are dropped unless this is set
    # Point-in-time recovery: base backups and WAL over a replication connection (the role needs REPLICATION).
    pitr: bool = False  # set up: the weekly base backup runs (scheduled runs skip it otherwise)
    replication_url: str | None = None  # default DATABASE_URL
    replication_slot: str = Field("sppg_backup", pattern=r"^[a-z0-9_]{1,63}$")
    wal_dir: Path | None = None  # the receiver's local spool; default STATE_DIR/wal
    wal_upload_interval_seconds: int = Field(10, ge=1)  # the segment being written reaches storage this often
    wal_stall_minutes: float = Field(5, gt=0)  # alert: no WAL reached storage for this long
    slot_max_retained_bytes: int = Field(10 * 2**30, gt=0)  # alert: the slot holds this much WAL on the server
    base_max_age_days: float = Field(8, gt=0)  # alert: no base backup for this long

    _split = field_validator(
        "age_recipients",
        "notify_urls",
        "replica_urls",
        "notify_warning_urls",
        "notify_critical_urls",
        "services",
        "config_paths",
        "docker_images",
        "scheduled_flows",
        mode="before",
    )(_split_commas)

    @field_validator(
        "age_identity_file", "gcp_service_account_file", "metrics_file", "audit_log", "scratch_dir", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("instance", mode="before")
    @classmethod
    def _check_instance(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        if not isinstance(value, str) or not re.match(INSTANCE_PATTERN, value):
            raise ValueError("an instance name is lower-case letters, digits and '-' (site-a), at most 40")
        return value

    @field_validator("uploads_dir", "app_dir", mode="before")
    @classmethod
    def _check_directory(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        if not Path(value).is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("config_paths")
    @classmethod
    def _check_config_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not Path(path).is_absolute():
                raise ValueError(f"{path} is not an absolute path")
        return value

    @field_validator("health_url")
    @classmethod
    def _check_health_url(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value or None

    @field_validator("database_url", "verify_database_url", "replication_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("must start with postgresql://")
        try:
            port = conninfo_to_dict(value).get("port")
        except psycopg.ProgrammingError:  # its message would quote the password
            raise ValueError("does not parse as postgresql://user:password@host:port/database") from None
        if port is not None and not all(p.strip().isdigit() for p in str(port).split(",")):
            raise ValueError(f"the port {port!r} is not a number")
        return value

    @field_validator("local_dir", mode="before")
    @classmethod
    def _check_local_dir(cls, value: Any) -> Any:
        if value in ("", None):
            return None  # empty: no local copies
        if not Path(value).is_absolute():
            raise ValueError("must be an absolute path (or empty for no local copies)")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        return _storage_url(value)

    @field_validator("replica_urls")
    @classmethod
    def _check_replica_urls(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for url in value:
            try:
                _storage_url(url)
            except ValueError as exc:
                raise ValueError(f"{url}: {exc}") from None
        # The storage is not its own replica: in the DR region `--storage` names one of them.
        here = str(info.data.get("storage_url", "")).rstrip("/")
        return [url for url in value if url.rstrip("/") != here]

    @field_validator("age_recipients")
    @classmethod
    def _check_recipients(cls, value: list[str]) -> list[str]:
        for key in value:
            if not key.startswith("age1"):
                raise ValueError(f"{key[:12]}... is not an age public key (age1...)")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("state_dir", "scratch_dir", "local_dir", "uploads_dir", "app_dir", "wal_dir")
    @classmethod
    def _a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a folder")
        return value

    @field_validator("audit_log", "metrics_file", "gcp_service_account_file")
    @classmethod
    def _a_file(cls, value: Path | None) -> Path | None:
        if value is not None and value.is_dir():
            raise ValueError(f"{value} is a folder, not a file")
        return value

    @model_validator(mode="before")
    @classmethod
    def _instance_places(cls, data: Any) -> Any:
        instance = data.get("instance") if isinstance(data, dict) else None
        if not isinstance(instance, str) or not re.match(INSTANCE_PATTERN, instance):
            return data  # none, or refused by the field's own check
        data = dict(data)
        for name in INSTANCE_PLACES:
            value = data.get(name, cls.model_fields[name].default)
            if name == "replica_urls":
                if name in data:  # else left unset: a recovery keeps the set's replicas
                    data[name] = [in_instance(url, instance) for url in _split_commas(value or [])]
            elif value not in (None, ""):
                data[name] = in_instance(str(value), instance)
        return data

    @model_validator(mode="after")
    def _check_level(self) -> Settings:
        if self.compression == "gzip" and self.compression_level is not None and self.compression_level > 9:
            raise ValueError("SPPG_BACKUP_COMPRESSION_LEVEL must be 1 to 9 for gzip")
        return self

    def require_recipients(self) -> list[str]:
        """Recipients for a new backup; checked when backing up, so `list` works without keys."""
        if self.encryption and not self.age_recipients:
            raise ConfigError(
                "bad setting SPPG_BACKUP_AGE_RECIPIENTS: empty while encryption is on; add an age public "
                "key (age-keygen -y key.txt), or set SPPG_BACKUP_ENCRYPTION=false to store backups unencrypted"
            )
        return self.age_recipients if self.encryption else []

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def scratch_root(self) -> Path:
        """Where runs keep decrypted dumps and downloads: SCRATCH_DIR, else STATE_DIR/scratch (not the system
        temp folder, which a reboot may clear under a run that is to be retried)."""
        return self.scratch_dir or self.state_dir / "scratch"

    @property
    def replication_target(self) -> str:
        """Where base backups and WAL come from: REPLICATION_URL, else DATABASE_URL."""
        return self.replication_url or self.database_url

    @property
    def wal_spool(self) -> Path:
        return self.wal_dir or self.state_dir / "wal"

    @property
    def audit_path(self) -> Path | None:
        if self.audit_log is not None:
            return self.audit_log
        return self.local_dir / "audit.jsonl" if self.local_dir else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if settings_cls.model_config.get("toml_file"):
            sources += (TomlConfigSettingsSource(settings_cls),)
        return sources


def _reading(path: Path) -> type[Settings]:
    """Settings that also read `path` (below the environment): a class of its own, so no module state says which
    file the next load reads."""
    config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})  # type: ignore[typeddict-item]
    return type("SettingsFromFile", (Settings,), {"model_config": config})


KNOWN_VARIABLES = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {ENV_PREFIX + "CONFIG"}


def _storage_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "file" and parts.path.startswith("/") and parts.netloc in ("", "localhost"):
        return value
    if parts.scheme == "gs" and parts.netloc:
        return value
    raise ValueError("must be file:///absolute/path or gs://bucket/prefix")


def in_instance(place: str, instance: str) -> str:
    """`place` (a path or a storage URL) with the instance's folder last: `gs://b/backups` -> `gs://b/backups/site-a`."""
    parts = urlsplit(place)
    path = (parts.path if parts.scheme else place).rstrip("/")
    if path.rsplit("/", 1)[-1] == instance:
        return place
    if not parts.scheme:
        return f"{path}/{instance}"
    return parts._replace(path=f"{path}/{instance}").geturl()


def _file_instance(path: Path) -> str | None:
    try:
        found = tomllib.loads(path.read_text()).get("instance")
    except (OSError, ValueError):
        return None  # the settings source reports what is wrong with the file
    return found if isinstance(found, str) else None


# What an instance's run may get from its worker's environment beside its settings file: anything else there (the
# worker's own DATABASE_URL, say) would win over the file, and every instance would back up the same database.
INSTANCE_RUN_VARIABLES = {ENV_PREFIX + name for name in ("CONFIG", "INSTANCE", "TARGET_PASSWORD")}


def _check_instance_run(instance: str, path: Path | None) -> None:
    """A run of one instance (SPPG_BACKUP_INSTANCE, set by its deployment) reads that instance's settings file."""
    if path is None:
        raise ConfigError(f"instance {instance}: no settings file (SPPG_BACKUP_CONFIG) names its database")
    in_file = _file_instance(path)
    if in_file is None:  # a template shared by instances would restore one's backup onto another's database
        raise ConfigError(f'config file {path} names no instance: add instance = "{instance}" to it')
    if in_file != instance:
        raise ConfigError(f"config file {path} is the settings of instance {in_file}, not of {instance}")
    stray = sorted(n for n in os.environ if n.startswith(ENV_PREFIX) and n not in INSTANCE_RUN_VARIABLES)
    if stray:
        raise ConfigError(
            f"{stray[0]} is set in the worker's environment: it would win over instance {instance}'s settings "
            f"file {path} (every instance would get it); move it into the settings files"
        )


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read settings from overrides, environment, then the TOML file; raise ConfigError naming the bad one."""
    path = config_file or os.environ.get(ENV_PREFIX + "CONFIG") or None
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file {path} does not exist")
    unknown = sorted(n for n in os.environ if n.startswith(ENV_PREFIX) and n not in KNOWN_VARIABLES)
    if unknown:  # a typo would otherwise leave the default in force, unnoticed (TOML keys are checked too)
        raise ConfigError(f"unknown setting {unknown[0]}: no such setting; `sppg-backup config show` lists them")
    given = os.environ.get(ENV_PREFIX + "INSTANCE")
    if given:
        _check_instance_run(given, Path(path) if path else None)
    try:
        if not path:
            return Settings(**overrides)
        made = _reading(Path(path))(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # a TOML file that does not parse
        raise ConfigError(f"config file {path}: {exc}") from None
    # a plain Settings again: tasks get it as a parameter, and Prefect hashes and keeps it
    return Settings.model_construct(_fields_set=made.model_fields_set, **dict(made))


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if field:
        return f"bad setting {ENV_PREFIX}{field.upper()}: {message}"
    return f"bad setting: {message}"


def mask_url(url: str) -> str:
    """Hide the password (and tokens in apprise URLs) of a URL."""
    parts = urlsplit(url)
    if not parts.scheme:
        return "***"
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        url = url.replace(parts.netloc, netloc, 1)
    url = re.sub(r"((?:password|pass|token|secret|key)=)[^&]*", r"\1***", url, flags=re.IGNORECASE)
    if parts.scheme not in ("postgresql", "postgres", "http", "https", "file", "gs"):
        # apprise URLs carry tokens in the path: keep only the service name.
        return f"{parts.scheme}://***"
    return url


# What a full-system set records of the settings it was taken with, for a new host: everything but secrets (the
# .env and the keys come back from the configuration snapshot and the key file, never from a manifest).
SECRET_SETTINGS = ("notify_urls", "notify_warning_urls", "notify_critical_urls", "pushgateway_url", "target_password")
URL_SETTINGS = ("database_url", "verify_database_url", "replication_url")


def recorded(settings: Settings) -> dict[str, Any]:
    """The settings as plain values with every secret left out: no password in a URL, no notification URL."""
    kept: dict[str, Any] = {}
    for name, value in masked(settings).items():
        if name in SECRET_SETTINGS:
            continue
        if name in URL_SETTINGS and isinstance(value, str):
            value = value.replace(":***@", "@")
        kept[name] = value
    return kept


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain values, secrets masked, for `config show`."""
    shown: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        if name in ("database_url", "verify_database_url", "replication_url", "pushgateway_url") and value:
            value = mask_url(value)
        elif name == "target_password" and value:
            value = "***"
        elif name in ("notify_urls", "notify_warning_urls", "notify_critical_urls"):
            value = [mask_url(url) for url in value]
        elif isinstance(value, Path):
            value = str(value)
        shown[name] = value
    return shown
