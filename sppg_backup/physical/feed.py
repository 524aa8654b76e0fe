"""The WAL a point-in-time recovery replays, fetched from storage while it replays: a thread fetches the segments
in the order the server asks for them, a bounded way ahead of it, into a folder beside the data; the server's
restore_command is a small shell script that hands it each one, waiting for those still on the way. Replay
starts with the first segment instead of after the last download, and stops fetching where the recovery stops
(a target early in the week does not download the whole week).

The server needs nothing of sppg-backup (a stock PostgreSQL whose user cannot run this program), and is never
told "no such file" for a segment storage holds: that would end the recovery early and promote an older
database. What the script answers:
- a file storage does not hold: exit 1 at once (PostgreSQL's "end of the archive", and how it probes timelines);
- a segment fetched: copied (a copy that fails aborts the recovery: exit 126);
- a segment storage holds only damaged: exit 1 for a recovery to a time (PostgreSQL itself then fails one that
  needed it with "recovery ended before configured recovery target"), 126 for `--latest`, which needs them all;
- a fetch that failed (storage gone, say): exit 126, which makes PostgreSQL abort the recovery.
"""

from __future__ import annotations

import os
import pwd
import shlex
import threading
from pathlib import Path
from typing import Any

from sppg_backup.errors import CheckFailed, PermanentError, TransientError
from sppg_backup.physical import wal
from sppg_backup.physical.gaps import DAMAGED
from sppg_backup.storage import Storage

AHEAD = 64  # segments fetched ahead of the one the server asked for last (1 GB of 16 MB segments)
RETRIES = 4  # of a segment whose fetch failed on the way (1, 2, 4, 8 s apart)
WANTED, ASKED, FAILED, SCRIPT = ".wanted", ".asked", ".failed", ".restore_wal.sh"
ABORT = 126  # PostgreSQL aborts the recovery on a restore_command exit code above 125

_SCRIPT = """#!/bin/sh
# restore_command of a point-in-time restore by sppg-backup: hands the server WAL fetched beside it ($0's folder)
dir=$(dirname "$0") name=$1 dest=$2
grep -qxF "$name" "$dir/{wanted}"
case $? in 0) ;; 1) exit 1 ;; *) exit {abort} ;; esac
printf '%s\\n' "$name" > "$dir/{asked}" || exit {abort}
while :; do
    if [ -f "$dir/$name" ]; then cp "$dir/$name" "$dest" || exit {abort}; exit 0; fi
    if [ -e "$dir/$name.damaged" ]; then exit {on_damaged}; fi
    if [ -e "$dir/{failed}" ]; then exit {abort}; fi
    sleep 0.05
done
"""


def order(name: str) -> tuple[str, int]:
    """The order a recovery asks for WAL: by position, and at a position the newest timeline first."""
    return (name[8:24], -int(name[:8], 16))


def restore_command(folder: Path) -> str:
    """The command as PostgreSQL runs it through the shell: the folder quoted whatever its name holds, and a `%`
    in it doubled (PostgreSQL's own placeholders are %f and %p)."""
    return "/bin/sh " + shlex.quote(str(folder / SCRIPT)).replace("%", "%%") + " %f %p"


def prepare(folder: Path, histories: list[str], segments: list[str], latest: bool) -> None:
    """The script and the names it may wait for, in `folder` (where the histories were fetched already)."""
    (folder / WANTED).write_text("".join(f"{n}\n" for n in [*histories, *segments]))
    on_damaged = ABORT if latest else 1
    script = _SCRIPT.format(wanted=WANTED, asked=ASKED, failed=FAILED, abort=ABORT, on_damaged=on_damaged)
    (folder / SCRIPT).write_text(script)
    for stale in (folder / ASKED, folder / FAILED, folder / DAMAGED):
        stale.unlink(missing_ok=True)


class Feed:
    """Fetches `segments` (in `order`) into `folder` while the server recovers; `with` starts and stops it.
    A segment damaged in storage is marked and noted in `folder`/.damaged; any other failure stops the feed,
    marks it failed (the waiting server aborts) and is raised by `check`."""

    def __init__(
        self,
        storage: Storage,
        segments: list[str],
        identities: list[Any],
        folder: Path,
        owner: pwd.struct_passwd | None,
        ahead: int = AHEAD,
    ) -> None:
        self.storage, self.segments, self.identities = storage, segments, identities
        self.folder, self.owner, self.ahead = folder, owner, ahead
        self.fetched: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-feed", daemon=True)

    def __enter__(self) -> Feed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        """The feed's failure, if it failed: the cause of the recovery's abort."""
        if self.error is not None:
            raise self.error

    def _asked(self) -> int:
        """Where in `segments` the server asked last (-1: not yet, or a name that is not one of them)."""
        try:
            name = (self.folder / ASKED).read_text().strip()
        except OSError:
            return -1
        return self._index.get(name, -1)

    def _run(self) -> None:
        self._index = {name: at for at, name in enumerate(self.segments)}
        try:
            for at, name in enumerate(self.segments):
                while at - self._asked() > self.ahead:
                    if self._stop.wait(0.05):
                        return
                if self._stop.is_set():
                    return
                self._fetch(name)
        except BaseException as exc:  # noqa: BLE001 - handed to the recovery's thread through check()
            self.error = exc
            (self.folder / FAILED).touch()

    def _fetch(self, name: str) -> None:
        arriving = self.folder / f".{name}.arriving"
        for attempt in range(RETRIES + 1):
            try:
                wal.fetch(self.storage, name, arriving, self.identities, durable=False)
                break
            except CheckFailed as exc:  # damaged in storage: a recovery to a time before it does not need it
                with open(self.folder / DAMAGED, "a") as noted:
                    noted.write(f"{name}\t{' '.join(str(exc).split())}\n")
                (self.folder / f"{name}.damaged").touch()
                return
            except TransientError:  # a connection reset must not end a recovery that ran for hours
                if attempt == RETRIES or self._stop.wait(2**attempt):
                    raise
            except OSError as exc:  # the folder beside the data: full, or gone
                raise PermanentError(f"cannot write WAL {name} into {self.folder}: {exc.strerror or exc}") from None
        try:
            if self.owner is not None:  # before it has its name: the server never sees a file it cannot read
                os.chown(arriving, self.owner.pw_uid, self.owner.pw_gid)
            os.replace(arriving, self.folder / name)
        except OSError as exc:
            raise PermanentError(f"cannot write WAL {name} into {self.folder}: {exc.strerror or exc}") from None
        self.fetched.append(name)
