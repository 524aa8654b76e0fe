"""A gap in the WAL a point-in-time recovery needs, found before the server starts: a segment missing from
storage (or only damaged there) on the recovery's timeline path is one line naming it, where the WAL before it
ends and when its last transaction committed; never a recovery that ends early with an older database."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sppg_backup.display import shown_time
from sppg_backup.errors import CheckFailed
from sppg_backup.physical import wal

DAMAGED = ".damaged"  # in the WAL folder: a segment storage holds only damaged, "name<TAB>why" a line
SEGMENT_BYTES = 16 << 20  # initdb's default, when no fetched file tells otherwise
ENDS = re.compile(r"desc: (?:COMMIT|ABORT)(?:_PREPARED)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


def damaged_wal(folder: Path) -> dict[str, str]:
    """The segments the WAL feed (physical/feed.py) left out as damaged in storage, and why."""
    try:
        lines = (folder / DAMAGED).read_text().splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def timeline_path(folder: Path, timeline: int) -> list[tuple[int, int]] | None:
    """The timelines a recovery to the latest timeline goes through from the base backup's `timeline`, each with
    the LSN it begins at, oldest first: PostgreSQL's own choice (the newest of the consecutive history files
    after it, and that file's ancestry). None when a history file does not parse (PostgreSQL then refuses)."""
    newest = timeline
    while (folder / f"{newest + 1:08X}.history").is_file():
        newest += 1
    if newest == timeline:
        return [(timeline, 0)]
    path, begin = [], 0
    try:
        for line in (folder / f"{newest:08X}.history").read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or not parts[0].isdigit():
                continue  # a comment or a blank line
            path.append((int(parts[0]), begin))
            begin = _lsn(parts[1])
    except (OSError, ValueError):
        return None
    path.append((newest, begin))
    return [(tli, start) for tli, start in path if tli >= timeline]


def segment_bytes(places: list[Path]) -> int:
    for place in places:
        for item in place.iterdir() if place.is_dir() else []:
            if len(item.name) == 24 and item.is_file():
                size = item.stat().st_size
                if size >= 1 << 20 and size & (size - 1) == 0:
                    return size
    return SEGMENT_BYTES


def on_path(name: str, path: list[tuple[int, int]] | None, size: int) -> bool:
    """Whether the recovery along `path` may ask for segment `name`: its timeline is the path's at its position
    (the segment of a switch belongs to both timelines). Unknown path (a history that does not parse): yes."""
    if path is None:
        return True
    per = 0x100000000 // size
    number, tli = int(name[8:16], 16) * per + int(name[16:24], 16), int(name[:8], 16)
    for at, (timeline, begin) in enumerate(path):
        end = path[at + 1][1] if at + 1 < len(path) else None
        if timeline == tli and begin // size <= number and (end is None or number <= end // size):
            return True
    return False


@dataclass(frozen=True)
class Gap:
    """The first WAL segment the recovery needs next and cannot have, on its timeline path."""

    name: str
    reaches: int  # the LSN where the continuous WAL before it ends (where the segment would start)
    before: list[str]  # the segments before it on the path, newest first
    beyond: str  # the newest segment of the path after it: the archive goes on
    damaged: str | None  # why the stored copy cannot be used, when there is one


def find_gap(data: Path, folder: Path, start_wal: str, stored: set[str] | None = None) -> Gap | None:
    """The first segment missing (or only damaged in storage) between the base backup's first segment and the
    newest one on the recovery's timeline path, among the WAL `stored` (else the WAL fetched into `folder`) and
    the WAL inside the base backup. The timeline histories are in `folder`."""
    path = timeline_path(folder, int(start_wal[:8], 16))
    if path is None:
        return None
    places = [folder, data / "pg_wal"]
    size = segment_bytes(places)
    per = 0x100000000 // size
    damaged = damaged_wal(folder)
    present = {item.name for place in places if place.is_dir() for item in place.iterdir()}
    if stored is not None:
        present = {item.name for item in (data / "pg_wal").iterdir()} | (stored - set(damaged))

    def expected(number: int) -> str:
        tli = [t for t, begin in path if begin // size <= number][-1:] or [path[0][0]]
        return f"{tli[0]:08X}{number // per:08X}{number % per:08X}"

    def number(name: str) -> int:
        return int(name[8:16], 16) * per + int(name[16:24], 16)

    first = number(start_wal)
    on_path = [
        number(n)
        for n in present | set(damaged)
        if len(n) == 24 and wal.NAME.match(n) and number(n) >= first and expected(number(n)) == n
    ]
    last = max(on_path, default=first)
    for at in range(first, last + 1):
        name = expected(at)
        if name not in present:
            before = [expected(n) for n in range(at - 1, max(first, at - 64) - 1, -1)]
            return Gap(name, at * size, before, expected(last), damaged.get(name))
    return None


def last_transaction(
    data: Path, folder: Path, names: list[str], bin_dir: Path, fetch: Callable[[str], None] | None = None
) -> datetime | None:
    """When the last transaction in the newest of `names` that has one ended (pg_waldump's COMMIT and ABORT
    records); None when none of them has one or pg_waldump cannot tell. `fetch` brings one into `folder`."""
    tool = bin_dir / "pg_waldump"
    if not tool.is_file():
        return None
    for name in names:
        if fetch is not None and not (folder / name).is_file() and not (data / "pg_wal" / name).is_file():
            fetch(name)
        path = folder / name if (folder / name).is_file() else data / "pg_wal" / name
        if not path.is_file():
            return None
        try:
            done = subprocess.run(
                [str(tool), str(path)], capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=300
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        ends = ENDS.findall(done.stdout)  # it ends with an error at the segment's end: the records still count
        if ends:
            return max(datetime.fromisoformat(end).replace(tzinfo=UTC) for end in ends)
    return None


def check_wal(
    data: Path,
    folder: Path,
    start_wal: str,
    to: datetime | None,
    bin_dir: Path,
    where: str,
    zone: Any,
    stored: set[str] | None = None,
    fetch: Callable[[str], None] | None = None,
) -> None:
    """A gap in the WAL the recovery to `to` (the newest state: None) needs is one line naming the segment, where
    the WAL before it ends and when its last transaction committed (the segments before it brought by `fetch`
    when they are only `stored`). A gap after the target does not matter: a transaction ending after `to` before
    the gap is where the recovery stops."""
    gap = find_gap(data, folder, start_wal, stored)
    if gap is None:
        return
    reached = last_transaction(data, folder, gap.before, bin_dir, fetch)
    if to is not None and (reached is None or reached > to):
        return  # reached before the gap (or cannot tell: PostgreSQL's own check below then fails it)
    what = f"WAL {gap.name} is missing from {where}" if gap.damaged is None else gap.damaged
    target = "the newest state" if to is None else shown_time(to, zone)
    last = f", its last transaction committed at {shown_time(reached, zone)}" if reached else ""
    goes_on = f" (the archive goes on to {gap.beyond})" if gap.beyond != gap.name else ""
    back = (
        "put it back" if gap.damaged is None else "if the key is right, delete that object and put an intact copy back"
    )
    # A time target needs a transaction ending after it to stop at: the newest time that can come back is
    # just before the last transaction ahead of the gap.
    raise CheckFailed(
        "wal",
        f"{what}, and the recovery to {target} needs it: the WAL before it ends at {lsn_text(gap.reaches)}{last}"
        f"{goes_on}; {back} (`sppg-backup wal push` from the database server's pg_wal, if it is still there) or "
        f"recover with --to a time before {'that' if reached else 'it'}",
    )
