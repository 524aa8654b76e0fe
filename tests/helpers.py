"""Small test helpers for real failure conditions: denied directories and full disks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.sandbox.clusters import free_port

__all__ = ["cli", "file_tree", "free_port", "moment_between", "read_only_dir", "tiny_filesystem", "unpack_base"]


def cli(*args: str, api: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `sppg-backup ARGS` as the on-call engineer would, against the Prefect API at `api` (and `env` set)."""
    env = {**os.environ, "PREFECT_API_URL": api, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sppg_backup", *args], capture_output=True, text=True, env=env, timeout=300
    )


def error_lines(stderr: str) -> list[str]:
    """The `error: ...` lines a command printed (there should be exactly one when it fails)."""
    return [line for line in stderr.splitlines() if line.startswith("error")]


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[Path]:
    """A directory nobody can write into, root included (chattr +i when running as root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a directory immutable here")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "256k") -> Iterator[Path]:
    """A real filesystem that fills up after `size` bytes (tmpfs; needs root)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def file_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """What a person compares after a restore: every path's type, mode, mtime and content (or link target)."""
    found: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("symlink", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", info.st_mode & 0o7777, info.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = ("file", info.st_mode & 0o7777, info.st_mtime_ns, info.st_size, digest)
    return found


def unpack_base(stored: Path, key: Path, base: Path, password: str) -> Path:
    """The README's way back from a base backup: age -d | zstd -d | tar -x into an empty folder owned by the
    postgres user; `base` is then a sandbox Cluster's folder (its data, and the superuser's password)."""
    import pwd

    data = base / "data"
    data.mkdir(parents=True)
    subprocess.run(f"age -d -i {key} {stored} | zstd -d | tar -x -C {data}", shell=True, check=True)
    (base / "password").write_text(password)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in [base, *base.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
    data.chmod(0o700)
    return base


def moment_between(conn: Any, first: str, then: str) -> Any:
    """Run `first`, take the server's time a second later, then run `then` a second after that: the moment a
    point-in-time recovery brings back `first` without `then`."""
    conn.execute(first)
    time.sleep(1.2)
    moment = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    time.sleep(1.2)
    conn.execute(then)
    return moment
