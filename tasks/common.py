"""What every task shares: retry only transient errors, with the settings' backoff; GCS credentials."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
from prefect.context import TaskRunContext
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects

from sppg_backup.errors import TransientError
from sppg_backup.instances import instance_tag
from sppg_backup.ops import scratch
from sppg_backup.ops.audit import AuditTrail, actor
from sppg_backup.settings import ENV_PREFIX, Settings, load_settings
from sppg_backup.storage.destinations import Destinations, open_destinations
from sppg_backup.tasks.credentials import gcp_credentials

T = TypeVar("T", bound=Task[Any, Any])
R = TypeVar("R")
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


def step(task: Task[..., R], settings: Settings, *args: Any, timeout_seconds: float | None = None, **kwargs: Any) -> R:
    """One step of a flow: `task(settings, *args, **kwargs)`, retried on transient errors with the settings'
    retries and backoff (and its own timeout, when given)."""
    retried = retrying(task, settings)
    if timeout_seconds is not None:
        retried = retried.with_options(timeout_seconds=timeout_seconds)
    return retried(settings, *args, **kwargs)


def run_name() -> str:
    """The run's name with its instance first (`site-a: gleeful-cuckoo`): the UI's lists tell instances apart."""
    name = flow_run.get_name() or ""
    instance = os.environ.get(ENV_PREFIX + "INSTANCE")
    if not instance:
        try:  # a host whose one settings file names its instance
            instance = load_settings((flow_run.get_parameters() or {}).get("config_file") or None).instance
        except Exception:
            return name  # the flow itself reports bad settings
    if not instance or name.startswith(f"{instance}: "):
        return name
    return f"{instance}: {name}"


def of_instance(instance: str | None) -> DeploymentFilter | None:
    """The server's filter for an instance's deployments (a page of them, not of every instance's); None: all
    (the caller keeps those of no instance)."""
    return DeploymentFilter(tags=DeploymentFilterTags(all_=[instance_tag(instance)])) if instance else None


def who() -> dict[str, str]:
    run_id = flow_run.get_id()
    name = flow_run.get_name()
    return actor(f"{name} ({run_id})" if run_id else None)


def destinations(settings: Settings) -> Destinations:
    """The run's storage clients: made once per flow run and settings (a GCS client and its credentials block
    cost a round trip each), shared by its tasks."""
    key = (settings.model_dump_json(), str(flow_run.get_root_flow_run_id() or uuid.uuid4()))
    with _opened_lock:
        found = _opened.get(key)
        if found is None:
            found = _opened[key] = open_destinations(settings, gcp_credentials(settings))
            while len(_opened) > 8:  # runs of a long-lived worker or `serve` come and go
                _opened.pop(next(iter(_opened)))
    return found


_opened: dict[tuple[str, str], Destinations] = {}
_opened_lock = threading.Lock()


def audit_trail(settings: Settings, dest: Destinations | None = None) -> AuditTrail:
    return AuditTrail(settings.audit_path, dest.storage if dest else None, who())


def run_key() -> str:
    """What names this run's work across retries: the root flow run (a subflow gets a new id each time its parent
    is retried) and this flow's name. Outside a flow run: a new one each call."""
    if flow_run.get_id() is None:
        return f"local-{uuid.uuid4().hex}"
    return f"{flow_run.get_root_flow_run_id()}-{flow_run.get_flow_name()}"


def root_run() -> str:
    """The root flow run's id ('' outside a flow run): every scratch folder of this run starts with it."""
    root = flow_run.get_root_flow_run_id() if flow_run.get_id() is not None else None
    return str(root) if root else ""


def keyed_on(*names: Callable[[dict[str, Any]], Any]) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """A cache key from the run and what identifies the work (a backup id, a target), never from volatile facts
    such as connection counts or unrelated settings: a retry after fixing the config still finds the step done."""

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        return hash_objects(run_key(), context.task.name, *(pick(parameters) for pick in names))

    return key


@contextlib.contextmanager
def scratch_folder(settings: Settings, keep_on_failure: bool = False) -> Iterator[Path]:
    """This run's private scratch folder (the same one when it is retried); see sppg_backup.ops.scratch."""
    with scratch.run_folder(settings.scratch_root, run_key(), keep_on_failure) as folder:
        yield folder
