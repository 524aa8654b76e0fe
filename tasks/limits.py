"""One run at a time per database, backup catalog and file catalog, across every worker and host: a Prefect global
concurrency limit (limit 1) per name in sppg_backup.ops.limits, taken with a lease the run renews while it works.
A second run waits, and says for which run; a scheduled snapshot does not wait but ends as Skipped. A Prefect
variable beside each limit names the run holding it, so the next run frees a slot a dead run left (its run ended
Crashed or Failed) at once instead of waiting for the lease to run out."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client, get_run_logger
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Completed, State
from prefect.variables import Variable

from sppg_backup.errors import BackupError, Busy, Skipped, TransientError
from sppg_backup.ops import limits
from sppg_backup.ops.limits import DATABASE as ON_DATABASE
from sppg_backup.ops.limits import FILES as ON_FILES
from sppg_backup.ops.limits import Kind
from sppg_backup.settings import Settings

__all__ = ["ON_DATABASE", "ON_FILES", "one_at_a_time", "scheduled", "skipped"]

LEASE_SECONDS = 60  # Prefect's shortest: a killed run's slot is free again a minute after its last renewal
_held: ContextVar[frozenset[str]] = ContextVar("sppg_held_limits", default=frozenset())
log = logging.getLogger("sppg_backup.limits")


def _say(message: str, *args: Any) -> None:
    log.warning(message, *args)  # the terminal of a command; the run's log below is what the UI shows
    with contextlib.suppress(MissingContextError):
        get_run_logger().info(message, *args)


def scheduled() -> bool:
    """This run was made by a schedule (not started by a person, the CLI or a watcher)."""
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.auto_scheduled)


def skipped(busy: Skipped) -> State[Any]:
    """The final state of a scheduled snapshot that found another run at work: no snapshot was needed twice."""
    _say("skipped: %s", busy)
    return Completed(name="Skipped", message=str(busy))


def _create(client: Any, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(ObjectAlreadyExists):  # made by the deploy step or an earlier run
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _holder(client: Any, name: str) -> tuple[dict[str, Any], Any] | None:
    """The run a limit's variable names, and that run (None when it is gone from the server)."""
    record = Variable.get(limits.holder_variable(name), default=None)
    if not isinstance(record, dict) or "flow_run" not in record:
        return None
    try:
        return record, client.read_flow_run(UUID(record["flow_run"]))
    except ObjectNotFound:
        return record, None


def _what(name: str) -> str:
    return name.removeprefix(limits.PREFIX).replace(":", " ", 1)  # "database erp_sppg@db:5432"


def _who(found: tuple[dict[str, Any], Any]) -> str:
    record, run = found
    state = run.state.name if run is not None and run.state else "gone"
    return f"{record.get('flow')} run '{record.get('run')}' ({state}, since {record.get('since')})"


def _busy(found: dict[str, tuple[dict[str, Any], Any] | None]) -> str:
    """'database X and backups Y are held by backup-database run 'Z' (Running, since ...)'."""
    by_run: dict[str, list[str]] = {}
    for name, holder in found.items():
        if holder is not None:
            by_run.setdefault(_who(holder), []).append(_what(name))
    if not by_run:  # it took the slot a moment ago and has not written its name yet
        return f"{' and '.join(_what(name) for name in found)}: another run holds them"
    return "; ".join(
        f"{' and '.join(what)} {'are' if len(what) > 1 else 'is'} held by {who}" for who, what in by_run.items()
    )


def _free_dead(client: Any, name: str, found: tuple[dict[str, Any], Any] | None) -> bool:
    """Release the slot of a holder whose run has ended (killed, its worker gone): True when one was."""
    if found is None:
        return False
    record, run = found
    earlier_try = record["flow_run"] == str(flow_run.get_id())  # this run retried after it crashed
    if run is not None and not earlier_try and not (run.state and run.state.is_final()):
        return False
    if run is not None and run.state and (run.state.message or "").startswith(limits.CRASHED_BY_AUTOMATION):
        return False  # perhaps alive behind a broken network: its lease, unrenewed for a minute, decides
    with contextlib.suppress(ObjectNotFound):
        client.release_concurrency_slots_with_lease(UUID(record["lease"]))
    Variable.unset(limits.holder_variable(name))
    _say("released %s held by %s: that run ended without giving it back", _what(name), _who(found))
    return True


def _take(client: Any, names: list[str]) -> UUID | None:
    """One request for every name: the slots, or None while another run holds one of them."""
    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(str(flow_run.get_id())))
    try:
        response = client.increment_concurrency_slots_with_lease(names, 1, "concurrency", LEASE_SECONDS, holder)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 423:
            return None
        raise BackupError(f"Prefect refused the concurrency limits {', '.join(names)}: {exc}") from None
    except httpx.TransportError as exc:
        raise TransientError(f"the Prefect API did not answer while taking {', '.join(names)}: {exc}") from None
    body = response.json()
    if len(body.get("limits", [])) < len(names):  # deleted by hand between _create and here
        client.release_concurrency_slots_with_lease(UUID(body["lease_id"]))
        _create(client, names)
        return _take(client, names)
    return UUID(body["lease_id"])


def _acquire(client: Any, names: list[str], wait_minutes: float, wait: bool) -> UUID:
    deadline = time.monotonic() + wait_minutes * 60
    told = ""
    while True:
        lease = _take(client, names)
        if lease is not None:
            return lease
        found = {name: _holder(client, name) for name in names}
        if any(_free_dead(client, name, holder) for name, holder in found.items()):
            continue
        busy = _busy(found)
        if not wait:
            raise Skipped(busy)
        if time.monotonic() > deadline:
            raise Busy(
                f"waited {wait_minutes:g} min and {busy}; nothing was done: run this again when it has finished "
                "(SPPG_BACKUP_WAIT_FOR_OTHER_RUN_MINUTES sets how long a run waits)"
            )
        if busy != told:
            _say("waiting: %s", busy)
            told = busy
        time.sleep(2)


def _record(names: list[str], lease: UUID) -> None:
    record = {
        "flow_run": str(flow_run.get_id()),
        "run": flow_run.get_name(),
        "flow": flow_run.get_flow_name(),
        "lease": str(lease),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for name in names:
        Variable.set(limits.holder_variable(name), {"limit": name, **record}, overwrite=True)


def _give_back(client: Any, names: list[str], lease: UUID) -> None:
    for name in names:
        variable = limits.holder_variable(name)
        record = Variable.get(variable, default=None)
        if isinstance(record, dict) and record.get("lease") == str(lease):
            Variable.unset(variable)
    client.release_concurrency_slots_with_lease(lease)


@contextlib.contextmanager
def one_at_a_time(
    settings: Settings, *kinds: Kind, wait: bool = True, database_url: str | None = None
) -> Iterator[None]:
    """Hold the limits of `kinds` (on `database_url`, default DATABASE_URL) for the block. A run nested in one that
    holds them (restore-database inside recover-server) goes straight in. Outside a flow run there is no Prefect to
    ask and nothing to hold."""
    names = [name for name in limits.names(settings, kinds, database_url) if name not in _held.get()]
    if not names or flow_run.get_id() is None:
        yield
        return
    with get_client(sync_client=True) as client:
        _create(client, names)
        lease = _acquire(client, names, settings.wait_for_other_run_minutes, wait)
        try:
            _record(names, lease)
            token = _held.set(_held.get() | set(names))
            try:
                # a lease that can no longer be renewed (the server lost it) stops the run: never two at once
                with maintain_concurrency_lease(lease, LEASE_SECONDS, raise_on_lease_renewal_failure=True):
                    yield
            finally:
                _held.reset(token)
        finally:
            _give_back(client, names, lease)
