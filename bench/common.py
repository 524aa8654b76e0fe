"""What the benchmarks share: timing a command with the peak memory of its whole process tree, and a
real Prefect server to run the CLI against."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from sppg_backup.sandbox import free_port


def tree_rss(pid: int) -> int:
    """Sum of RSS (bytes) of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += children.get(current, [])
    return total


def timed(command: list[str] | str, env: dict[str, str] | None = None, shell: bool = False) -> tuple[float, int]:
    """Wall time and peak memory of a command and its children."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, shell=shell, executable="/bin/bash" if shell else None)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {command}")
    return elapsed, peak


@contextlib.contextmanager
def prefect_server(workdir: Path) -> Iterator[str]:
    """A real `prefect server` (SQLite) for timing the CLI as users run it, with the flow reported."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = str(Path(sys.executable).with_name("prefect"))
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(api + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        yield api
    finally:
        proc.terminate()
        proc.wait(30)
