"""Hostile or mistyped input: one line saying what to do, never `unexpected ...`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import cli

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
    lines = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "not a name in storage" in lines[0] and "unexpected" not in done.stderr
