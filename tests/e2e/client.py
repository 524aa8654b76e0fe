"""Calls to a real Prefect server's API, as the UI makes them."""

from __future__ import annotations

import asyncio
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID


def api(url: str, work: Any) -> Any:
    """Run `await work(client)` against the server at `url`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def call() -> Any:
        async with get_client() as client:
            return await work(client)

    with temporary_settings({PREFECT_API_URL: url}), ThreadPoolExecutor(1) as thread:
        # a thread of its own: Playwright's sync API keeps an event loop running in this one
        context = contextvars.copy_context()  # the settings above travel with it
        return thread.submit(context.run, asyncio.run, call()).result()


def deployment(url: str, name: str) -> Any:
    return api(url, lambda client: client.read_deployment_by_name(name))


def trigger(url: str, parameters: dict[str, Any], name: str = "restore-database/on-demand") -> UUID:
    """What Run > Custom run does: a flow run of the deployment with these parameters."""
    found = deployment(url, name)
    run = api(url, lambda client: client.create_flow_run_from_deployment(found.id, parameters=parameters))
    return run.id  # type: ignore[no-any-return]


def wait_final(url: str, run_id: UUID, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(url, lambda client: client.read_flow_run(run_id))
        if run.state and run.state.is_final():
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s")


def retry(url: str, run_id: UUID) -> Any:
    """The UI's Retry button: the failed run goes back to Scheduled and runs again under the same id."""
    from prefect.states import Scheduled

    api(url, lambda client: client.set_flow_run_state(run_id, Scheduled(), force=True))
    return wait_final(url, run_id)


def task_runs(url: str, run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return api(  # type: ignore[no-any-return]
        url,
        lambda client: client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))),
    )


def task_states(url: str, run_id: UUID) -> dict[str, str]:
    """Task name (without its run suffix) -> state name of its last run, e.g. {"safety-backup": "Cached"}."""
    runs = sorted(task_runs(url, run_id), key=lambda t: t.expected_start_time or t.created)
    return {t.name.rsplit("-", 1)[0]: t.state.name for t in runs if t.state}


def artifacts(url: str, run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    return api(  # type: ignore[no-any-return]
        url,
        lambda client: client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        ),
    )
