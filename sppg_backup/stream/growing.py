"""A file one thread writes while others already read it: the restore loads tables while the download runs."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO


class GrowingFile:
    """How much of `path` is written, and whether the writer finished (checksum verified) or failed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.done = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    @classmethod
    def complete(cls, path: Path) -> GrowingFile:
        """A file that is already all there."""
        grown = cls(path)
        grown.finish()
        return grown

    def restart(self) -> None:
        """The writer starts again from the first byte (a retried download writes the same bytes again)."""
        with self._cond:
            self.size = 0

    def wrote(self, n: int) -> None:
        with self._cond:
            self.size += n
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            if not self.done:
                self.size = os.stat(self.path).st_size
                self.done = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if not self.done:
                self.error, self.done = error, True
            self._cond.notify_all()

    def wait(self, end: int, timeout: float | None = None) -> int:
        """Wait until `end` bytes are written or the writer is done; the bytes written. Raises the writer's error."""
        with self._cond:
            self._cond.wait_for(lambda: self.size >= end or self.done, timeout)
            if self.error is not None:
                raise self.error
            return self.size

    def wait_done(self) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.done)
            if self.error is not None:
                raise self.error
            return self.size


class Tracking:
    """Writes to an unbuffered file and tells `grown` about every byte, so readers see it at once."""

    def __init__(self, out: IO[bytes], grown: GrowingFile) -> None:
        self._out, self._grown = out, grown

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = self._out.write(view) or 0
            view = view[n:]
            self._grown.wrote(n)
        return len(data)


_active: dict[Path, GrowingFile] = {}
_lock = threading.Lock()


def expect(path: Path) -> GrowingFile:
    """Announce that `path` is about to be written in this process (before its reader may start)."""
    with _lock:
        grown = _active[path] = GrowingFile(path)
        return grown


def find(path: Path) -> GrowingFile | None:
    with _lock:
        return _active.get(path)


def forget(path: Path) -> None:
    with _lock:
        _active.pop(path, None)
