"""What every task shares: retry only transient errors, with the settings' backoff; GCS credentials."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from prefect import Task
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from sppg_backup.audit import AuditTrail, actor
from sppg_backup.backup import Destinations, open_destinations
from sppg_backup.errors import TransientError
from sppg_backup.settings import Settings

T = TypeVar("T", bound=Task[Any, Any])
log = logging.getLogger("sppg_backup.retry")


def only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task only when its error is transient (network, timeouts), and say so on stderr."""
    try:
        state.result()
    except TransientError as exc:
        retries = task.retries if isinstance(task.retries, int) else 0
        if task_run.run_count <= retries:
            log.warning("retrying %s (%d of %d) after: %s", task.name, task_run.run_count, retries, exc)
        return True
    except BaseException:
        return False
    return False


def retrying(task: T, settings: Settings) -> T:
    return task.with_options(  # type: ignore[return-value]
        retries=settings.retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_delay_seconds)(settings.retries),
        retry_condition_fn=only_transient,
    )


def gcp_credentials(settings: Settings) -> Any:
    """A prefect-gcp GcpCredentials block, else a key file, else None (application default or emulator)."""
    if not settings.storage_url.startswith("gs://"):
        return None
    if settings.gcp_credentials_block:
        from prefect_gcp import GcpCredentials

        block = GcpCredentials.load(settings.gcp_credentials_block)
        return block.get_credentials_from_service_account()
    if settings.gcp_service_account_file:
        from sppg_backup.storage.gcs import credentials_from_file

        return credentials_from_file(str(settings.gcp_service_account_file))
    return None


def who() -> dict[str, str]:
    run_id = flow_run.get_id()
    name = flow_run.get_name()
    return actor(f"{name} ({run_id})" if run_id else None)


def destinations(settings: Settings) -> Destinations:
    return open_destinations(settings, gcp_credentials(settings))


def audit_trail(settings: Settings, dest: Destinations | None = None) -> AuditTrail:
    return AuditTrail(settings.audit_path, dest.storage if dest else None, who())
