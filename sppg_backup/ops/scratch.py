"""Scratch space for decrypted dumps and downloaded parts: one private folder per run, under STATE_DIR/scratch
(or SCRATCH_DIR), locked while its run lives. A later run removes every folder no live run holds, so a run
killed at any moment leaves nothing behind for long."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from sppg_backup.storage.base import file_sha256

LOCK = ".lock"
YOUNG_SECONDS = 10  # a folder this new may not hold its lock yet


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "run"


def _try_lock(folder: Path) -> int | None:
    """The folder's lock, taken without waiting; None while a live run holds it (in this process too: flock
    locks of separate opens conflict)."""
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def stop_server(data: Path) -> None:
    """A scratch PostgreSQL server a killed run left running on `data` (a base backup's check): stopped at once,
    its data being thrown away. Only the postmaster whose command line names this folder."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if str(data) not in command:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)


def abandoned(root: Path) -> list[Path]:
    """The folders under `root` no live run holds (their run ended or was killed)."""
    return clean_abandoned(root, remove=False)


def clean_abandoned(root: Path, remove: bool = True, spare: str = "") -> list[Path]:
    """Remove the folders under `root` that no live run holds (their run ended or was killed), except those of
    the run named `spare` (a retried run's own downloads); the removed ones."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for folder in root.iterdir():
            if not folder.is_dir() or folder.is_symlink() or (spare and folder.name.startswith(_safe(spare))):
                continue
            with contextlib.suppress(FileNotFoundError):
                if time.time() - folder.stat().st_mtime < YOUNG_SECONDS:
                    continue
            fd = _try_lock(folder)
            if fd is None:
                continue
            try:
                if remove:
                    stop_server(folder / "data")
                    shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            finally:
                os.close(fd)
    return removed


@contextlib.contextmanager
def run_folder(root: Path, run: str, keep_on_failure: bool = False) -> Iterator[Path]:
    """The private folder of run `run` (the same one when the run is retried), held while the block runs.

    Removed afterwards, except after a failure with `keep_on_failure`: a retried run then finds its downloads,
    and a later run removes them once no run holds them.
    """
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = root / _safe(run)
    folder.mkdir(exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    fd = _try_lock(folder)
    if fd is None:
        raise RuntimeError(f"scratch folder {folder} is in use by another process")
    failed = False
    try:
        clean_abandoned(root)
        yield folder
    except BaseException:
        failed = True
        raise
    finally:
        if not (failed and keep_on_failure):
            shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def _seal_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def seal(path: Path) -> str:
    """Record the sha256 of a finished file beside it, so a later reuse can tell it is still whole."""
    digest = file_sha256(path)
    _seal_path(path).write_text(digest)
    return digest


def is_sealed(path: Path) -> bool:
    """The file is there and its content is what was sealed."""
    try:
        return _seal_path(path).read_text().strip() == file_sha256(path)
    except OSError:
        return False
