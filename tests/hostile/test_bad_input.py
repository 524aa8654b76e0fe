"""Hostile or mistyped input: one line saying what to do, never `unexpected ...`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import cli, error_lines

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "args",
    [
        ("restore", "db", "../../etc/passwd", "--dry-run"),
        ("verify", "../../etc/passwd"),
        ("restore", "full", "../x", "--yes"),
        ("restore", "files", "--snapshot", "../../x", "--target", "/tmp/never"),
    ],
    ids=["restore db", "verify", "restore full", "restore files"],
)
def test_an_id_that_leaves_storage_is_one_clear_line(
    fresh_backup: dict[str, Any], prefect_api: str, args: tuple[str, ...]
) -> None:
    done = cli(*args, api=prefect_api)
    lines = error_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "not a name in storage" in lines[0] and "unexpected" not in done.stderr


def test_a_cli_run_keeps_the_terminal_quiet_and_its_logs_reach_the_prefect_api(
    backup_env: dict[str, str], prefect_api: str
) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    done = cli("backup", "db", "--json", api=prefect_api)
    assert done.returncode == 0 and " | INFO " not in done.stderr, done.stderr
    backup_id = json.loads(done.stdout)["id"]

    async def logs() -> list[str]:
        async with get_client() as client:
            [run] = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["backup-database"])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=1,
            )
            found = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            return [entry.message for entry in found]

    assert any(f"backup {backup_id}: dumping" in message for message in asyncio.run(logs()))
