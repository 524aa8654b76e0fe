"""What the benchmarks share: timing a command with the peak memory of its whole process tree."""

from __future__ import annotations

import os
import subprocess
import time


def tree_rss(pid: int) -> int:
    """Sum of RSS (bytes) of a process and all its descendants."""
    return tree_rss_detail(pid)[0]


def tree_rss_detail(pid: int) -> tuple[int, int]:
    """Sum of RSS (bytes) of a process and all its descendants, and the RSS of the largest one of them."""
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
    total, largest, todo = 0, 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        largest = max(largest, rss.get(current, 0))
        todo += children.get(current, [])
    return total, largest


def timed(command: list[str] | str, env: dict[str, str] | None = None, shell: bool = False) -> tuple[float, int]:
    """Wall time and peak memory of a command and its children."""
    elapsed, peak, _ = timed_detail(command, env, shell)
    return elapsed, peak


def timed_detail(
    command: list[str] | str, env: dict[str, str] | None = None, shell: bool = False
) -> tuple[float, int, int]:
    """Wall time, peak memory of a command and its children together, and the peak of the largest one."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, shell=shell, executable="/bin/bash" if shell else None)
    peak = largest = 0
    while proc.poll() is None:
        total, biggest = tree_rss_detail(proc.pid)
        peak, largest = max(peak, total), max(largest, biggest)
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {command}")
    return elapsed, peak, largest
