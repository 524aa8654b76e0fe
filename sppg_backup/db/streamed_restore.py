"""pg_restore while the archive is still being downloaded: tables load in parallel as their data arrives.

Plain `pg_restore -j` needs the whole archive on disk first, and a pipe into pg_restore loads one table at
a time. Here the schema is created as soon as the table of contents is in; `jobs` pg_restore processes
then each load one table (or a run of small ones), fed the TOC and then that table's block from the
growing file; indexes, constraints and the rest run last with `pg_restore -j` once the download's checksum
has been verified. Memory stays bounded: the file on disk is the buffer.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO

from sppg_backup.db import pgdump_format, postgres
from sppg_backup.errors import CheckFailed
from sppg_backup.storage.base import CHUNK
from sppg_backup.stream.growing import GrowingFile

SMALL_RUN = 16 << 20  # tables this small share one pg_restore process


def restore(
    url: str,
    archive: Path,
    grown: GrowingFile,
    pg_restore: str,
    jobs: int,
    check: str = "restore",
    small_run: int = SMALL_RUN,
) -> None:
    """Restore `archive` (complete, or still growing) into the existing, empty database of `url`."""
    grown.wait(1)
    with open(archive, "rb") as f:
        try:
            toc = pgdump_format.read_toc(_SequentialReader(f.fileno(), grown).read)
        except pgdump_format.Unsupported:
            grown.wait_done()
            _run(pg_restore, url, ["--jobs", str(jobs), str(archive)], check)
            return
        loader = _Loader(url, f.fileno(), grown, toc, pg_restore, check, small_run)
        toc_file = archive.with_name(archive.name + ".toc")
        try:
            loader.toc_bytes = os.pread(f.fileno(), toc.length, 0)
            toc_file.write_bytes(loader.toc_bytes)
            pre = [e.dump_id for e in toc.entries if e.section == pgdump_format.SECTION_PRE_DATA]
            _run_list(pg_restore, url, toc_file, pre, [], check)
            loader.toc_file = toc_file
            loader.load(jobs)
            grown.wait_done()  # the checksum is verified before the rest is built on the data
            rest = [
                e.dump_id
                for e in toc.entries
                if e.section != pgdump_format.SECTION_PRE_DATA and not e.has_data and e.dump_id not in loader.done
            ]
            _run_list(pg_restore, url, toc_file, rest, ["--jobs", str(jobs)], check)
        finally:
            toc_file.unlink(missing_ok=True)


class _SequentialReader:
    def __init__(self, fd: int, grown: GrowingFile) -> None:
        self.fd, self.grown, self.pos = fd, grown, 0

    def read(self, n: int) -> bytes:
        self.grown.wait(self.pos + n)
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        return data


class _Loader:
    """Scans the growing archive for block boundaries and hands blocks to `jobs` pg_restore processes."""

    def __init__(
        self, url: str, fd: int, grown: GrowingFile, toc: pgdump_format.Toc, pg_restore: str, check: str, small: int
    ) -> None:
        self.url, self.fd, self.grown, self.toc, self.pg_restore, self.check = url, fd, grown, toc, pg_restore, check
        self.small = small
        self.toc_bytes = b""
        self.toc_file = Path()
        self.post_data = toc.single_table_post_data()
        self.done: set[int] = set()  # post-data entries already restored
        self.blocks: list[tuple[int, int]] = []  # (dump id, start) in file order
        self.certain = toc.length  # every block start before this offset is in self.blocks
        self.end: int | None = None  # end of the last block, once the file is complete
        self.next = 0
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self.procs: set[subprocess.Popen[bytes]] = set()

    def load(self, jobs: int) -> None:
        if not self.toc.data:
            return
        threads = [threading.Thread(target=self._guard, args=(self._scan,), daemon=True)]
        threads += [threading.Thread(target=self._guard, args=(self._work,), daemon=True) for _ in range(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.error is not None:
            raise self.error

    def _guard(self, job: object) -> None:
        try:
            job()  # type: ignore[operator]
        except BaseException as exc:
            with self.cond:
                self.error = self.error or exc
                self.cond.notify_all()
                for proc in self.procs:
                    proc.kill()

    def _scan(self) -> None:
        scanner = pgdump_format.BlockScanner(self.toc)
        pos, data = self.toc.length, b""
        while True:
            size = self.grown.wait(pos + 1, timeout=0.2)
            self._stop_if_failed()
            if size <= pos:
                if self.grown.done and self.grown.size <= pos:
                    break
                continue
            data = os.pread(self.fd, min(CHUNK, size - pos), pos)
            pos += len(data)
            try:
                found = scanner.feed(data)
            except ValueError as exc:
                raise CheckFailed(self.check, f"cannot restore: {exc}") from None
            with self.cond:
                self.blocks += found
                self.certain = scanner.certain
                self.cond.notify_all()
        if scanner.expected or not data.endswith(self.toc.terminator()):
            raise CheckFailed(self.check, "the archive ends early: the data of some tables is missing")
        with self.cond:
            self.certain = self.end = pos
            self.cond.notify_all()

    def _stop_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError("stopped")

    def _end_of(self, i: int) -> int | None:
        return self.blocks[i + 1][1] if i + 1 < len(self.blocks) else self.end

    def _take(self) -> list[int] | None:
        """The next block, with the small blocks after it whose size is already known."""
        with self.cond:
            self.cond.wait_for(lambda: self.error is not None or self.next < len(self.blocks) or self.end is not None)
            self._stop_if_failed()
            if self.next >= len(self.blocks):
                return None
            run = [self.next]
            while True:
                end, i = self._end_of(run[-1]), run[-1] + 1
                if end is None or i >= len(self.blocks) or end - self.blocks[run[0]][1] >= self.small:
                    break
                after = self._end_of(i)
                if after is None or after - self.blocks[run[0]][1] > self.small:
                    break
                run.append(i)
            self.next = run[-1] + 1
            return run

    def _work(self) -> None:
        while (run := self._take()) is not None:
            self._load(run)
            if len(run) == 1 and self._size(run[0]) >= self.small:
                # A big table's indexes are built now, while other tables still load, as pg_restore -j does.
                post = self.post_data.get(self.blocks[run[0]][0], [])
                _run_list(self.pg_restore, self.url, self.toc_file, post, [], self.check)
                with self.cond:
                    self.done.update(post)

    def _size(self, i: int) -> int:
        with self.cond:
            end = self._end_of(i)
        return end - self.blocks[i][1] if end is not None else 0

    def _load(self, run: list[int]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".list") as listing, tempfile.TemporaryFile() as errors:
            listing.write("".join(f"{self.blocks[i][0]};\n" for i in run))
            listing.flush()
            conninfo, env = postgres.libpq_env(self.url)
            command = [self.pg_restore, *_OPTIONS, "--use-list", listing.name, "--dbname", conninfo]
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env)
            with self.cond:
                self.procs.add(proc)
            assert proc.stdin is not None
            try:
                self._feed(proc.stdin, self.blocks[run[0]][1], run[-1])
            except BrokenPipeError:
                pass
            finally:
                # Whatever ended the feed: pg_restore gets its end of input, and is killed when the restore
                # failed; it may have started after the failure killed the others, and would wait for input.
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                if self.error is not None:
                    proc.kill()
                proc.wait()
                with self.cond:
                    self.procs.discard(proc)
            self._stop_if_failed()
            if proc.returncode != 0:
                errors.seek(0)
                raise CheckFailed(self.check, f"pg_restore failed: {_tail(errors.read().decode(errors='replace'))}")

    def _feed(self, sink: IO[bytes], pos: int, last: int) -> None:
        """The TOC, then the archive from `pos` to the end of block `last`, as it is written."""
        sink.write(self.toc_bytes)
        sink.flush()
        while True:
            start = pos
            with self.cond:
                self.cond.wait_for(lambda: self.error is not None or self._limit(last, start)[0] > start)  # noqa: B023
                self._stop_if_failed()
                limit, final = self._limit(last, pos)
            while pos < limit:  # the kernel moves the bytes from the page cache into the pipe
                pos += os.sendfile(sink.fileno(), self.fd, pos, limit - pos)
            if final:
                return

    def _limit(self, last: int, pos: int) -> tuple[int, bool]:
        end = self._end_of(last)
        return (end, True) if end is not None else (max(pos, self.certain), False)


_OPTIONS = ["--no-owner", "--no-privileges", "--exit-on-error"]


def _tail(stderr: str) -> str:
    return "; ".join(stderr.strip().splitlines()[-3:]) or "no message"


def _run(pg_restore: str, url: str, args: list[str], check: str) -> None:
    conninfo, env = postgres.libpq_env(url)
    done = subprocess.run(
        [pg_restore, *_OPTIONS, "--dbname", conninfo, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise CheckFailed(check, f"pg_restore failed: {_tail(done.stderr)}")


def _run_list(pg_restore: str, url: str, toc_file: Path, ids: list[int], args: list[str], check: str) -> None:
    if not ids:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
        listing.write("".join(f"{i};\n" for i in ids))
        listing.flush()
        _run(pg_restore, url, [*args, "--use-list", listing.name, str(toc_file)], check)
