"""What every command shares: the typer apps, the consoles, the options given before the command, running a flow
or core call, and the one map from error kinds to exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from sppg_backup.cli import runs
from sppg_backup.errors import BackupError, CheckFailed, ConfigError, Stopped
from sppg_backup.ops.limits import LEASES_IN_FILES
from sppg_backup.settings import ENV_PREFIX, Settings, load_settings

app = typer.Typer(help="Backup and disaster recovery for ERP SPPG.", no_args_is_help=True, add_completion=False)
backup_app = typer.Typer(help="Make a backup.", no_args_is_help=True)
restore_app = typer.Typer(help="Restore a backup.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")
app.add_typer(config_app, name="config")
app.add_typer(restore_app, name="restore")
# Piped output (logs, cron mail) is not wrapped at 80 columns: ids and paths stay whole.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 400)


@dataclass(frozen=True)
class Invocation:
    """What was given before the command (--config, -v), kept in the command's context (`ctx.obj`): every
    setting the command reads and every flow it runs get it from here, not from the environment."""

    config: Path | None = None
    verbose: bool = False

    def settings(self) -> Settings:
        """The settings of this command (--config, environment), or one error line and exit 2."""
        return self.run(load_settings, self.config)  # type: ignore[no-any-return]

    def run(self, func: Any, *args: Any, json_failure: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Call a flow or core function; turn our errors into one line and an exit code. A flow gets --config as
        its `config_file` parameter.

        With `json_failure` (commands given --json), a failed check is also printed as JSON on stdout.
        """
        try:
            flows = sys.modules.get("prefect.flows")  # not imported: not a flow (the wal commands stay fast)
            if flows is None or not isinstance(func, flows.Flow):
                return func(*args, **kwargs)
            from prefect import tags

            if self.config is not None:
                kwargs.setdefault("config_file", str(self.config))
            runs.guarded(runs.crash_runs_of_killed_commands)
            with tags(runs.tag()), stopped_by_sigterm():  # tags: a later command tells a killed one's run apart
                return func(*args, **kwargs)
        except Exception as exc:
            if self.verbose and not isinstance(exc, BackupError):
                raise
            if json_failure is not None and isinstance(exc, CheckFailed):
                print(json.dumps({**json_failure, "status": "failed", "check": exc.check, "detail": str(exc)}))
            fail(exc)


def _stop(signum: int, frame: Any) -> None:
    raise Stopped()


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM during a flow ends in the Stopped line and exit 143. Prefect turns it into TerminationSignal while
    its engine runs, then sends it again to the handler it found: the default one would kill the process with no
    line said, before or after the flow's own failure handling (a race the tests saw)."""
    try:
        previous = signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Use this storage instead of STORAGE_URL (e.g. the DR region's replica): list, verify, restore...",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    if storage is not None:  # the environment wins over the config file; the flows run in this process
        os.environ[ENV_PREFIX + "STORAGE_URL"] = storage
    ctx.obj = Invocation(config.resolve() if config is not None else None, verbose)
    if not verbose:
        # Prefect's console logs (tracebacks included) still reach the Prefect API; the terminal gets one line.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault(*LEASES_IN_FILES)  # the temporary server a command starts (sppg_backup.ops.limits)


def fail(exc: Exception) -> NoReturn:
    """One line on stderr; exit 2 for bad configuration, 1 for everything else."""
    exceptions = sys.modules.get("prefect.exceptions")
    if exceptions is not None and isinstance(exc, exceptions.TerminationSignal):
        exc = Stopped()
    if isinstance(exc, CheckFailed):
        message = f"check '{exc.check}' failed: {exc}"
    elif isinstance(exc, BackupError):
        message = str(exc)
    else:  # a bug or an unforeseen failure: still one line, details with -v or in the Prefect UI
        message = f"unexpected {type(exc).__name__}: {exc} (run with -v for details)"
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2 if isinstance(exc, ConfigError) else 143 if isinstance(exc, Stopped) else 1) from None


def given_time(value: str, option: str, zone: Any) -> Any:
    """A time given on the command line (ISO 8601; without a zone, in TIMEZONE), or one error line and exit 2."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(ConfigError(f"{option} {value!r} is not a time like 2026-12-01T10:30:59 or 2026-12-01 10:30:59+07:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def target_without_password(url: str | None) -> str | None:
    """A --target-url's password goes to the run through the environment (TARGET_PASSWORD), never into the run's
    parameters, which Prefect keeps and shows."""
    if not url:
        return url
    from sppg_backup.db.postgres import split_password

    try:
        bare, password = split_password(url)
    except BackupError as exc:
        fail(exc)
    if password:
        os.environ[ENV_PREFIX + "TARGET_PASSWORD"] = str(password)
    return bare


def existing_storage(settings: Any) -> Any:
    """The configured storage; a storage directory that does not exist is an error, not an empty catalog."""
    from sppg_backup.errors import NotFoundError
    from sppg_backup.storage import open_storage
    from sppg_backup.tasks.credentials import gcp_credentials

    storage = open_storage(settings.storage_url, gcp_credentials(settings), settings.gcp_project)
    if storage.folder is not None and not storage.folder.is_dir():
        raise NotFoundError(f"storage directory {storage.folder} does not exist; check SPPG_BACKUP_STORAGE_URL")
    return storage
