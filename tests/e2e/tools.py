"""What the e2e tests do to a scene."""

from __future__ import annotations

from typing import Any


def break_pg_restore(scene: dict[str, Any], postgres_cluster: Any) -> str:
    """Point pg_bin_dir (in the config file) at a pg_restore that fails ("disk full"); returns the config as it
    was, so writing it back is the engineer's fix."""
    original: str = scene["config"].read_text()
    tools = scene["tmp"] / "bin"
    tools.mkdir()
    for name in ("pg_dump", "pg_restore"):
        real = postgres_cluster.bin_dir / name
        gate = '[ "$1" = --version ] || { echo "pg_restore: error: disk full" >&2; exit 1; }\n'
        (tools / name).write_text(f'#!/bin/sh\n{gate if name == "pg_restore" else ""}exec {real} "$@"\n')
        (tools / name).chmod(0o755)
    scene["config"].write_text(original + f'pg_bin_dir = "{tools}"\n')
    return original
