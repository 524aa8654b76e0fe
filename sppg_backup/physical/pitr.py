"""Point-in-time restore into a new data directory: the newest base backup that ends before the target, the WAL
after it from storage, PostgreSQL's own recovery to the target, then promotion. The running database is never
touched.

The WAL is fetched into a folder beside the data while the server replays it, and handed over by a small shell
script (physical/feed.py), so the server needs nothing of sppg-backup (a stock PostgreSQL, in a container or
not, whose user cannot run this program). Before the server starts, the WAL storage holds is checked for a gap
(physical/gaps.py).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import zstandard
from pydantic import BaseModel, ConfigDict, Field

from sppg_backup.db import postgres
from sppg_backup.db.catalog import Manifest, list_backups
from sppg_backup.display import shown_time
from sppg_backup.errors import CheckFailed, ConfigError, NotFoundError, PermanentError
from sppg_backup.forms import Text, WibTime
from sppg_backup.physical import feed, gaps, wal
from sppg_backup.storage import Storage
from sppg_backup.stream import safe_tar
from sppg_backup.stream.pack import streamed

MARK = "# point-in-time restore by sppg-backup"  # what follows it in postgresql.auto.conf is ours
SHORT = "recovery ended before configured recovery target was reached"
READY = "database system is ready to accept connections"  # after the promotion ("read-only" before it)


@dataclass(frozen=True)
class Window:
    """What storage can bring back: from the end of the oldest base backup to the newest WAL upload."""

    bases: list[Manifest]
    earliest: datetime | None
    latest: datetime | None


def window(storage: Storage) -> Window:
    bases = list_backups(storage, ("base",)).backups
    uploads = [a.updated for a in [*wal.archived(storage), *wal.partials(storage)]]
    ends = [m.finished_at for m in bases]
    latest = max([*uploads, *ends], default=None)
    return Window(bases, min(ends, default=None), latest)


def choose(storage: Storage, to: datetime | None, zone: Any) -> Manifest:
    """The newest base backup that ends before `to` (the newest of all for the latest state)."""
    found = window(storage)
    if not found.bases or found.earliest is None or found.latest is None:
        raise NotFoundError(f"no base backup in {storage.url}: run `sppg-backup backup base` first")
    if to is None:
        return found.bases[-1]
    if not found.earliest <= to <= found.latest:
        raise PermanentError(
            f"{shown_time(to, zone)} cannot be recovered from {storage.url}: the earliest recoverable time is "
            f"{shown_time(found.earliest, zone)}, the latest {shown_time(found.latest, zone)}"
        )
    return [m for m in found.bases if m.finished_at <= to][-1]


def check_target(target: Path, port: int, ignore: tuple[str, ...] = ()) -> None:
    """An empty (or new) folder and a free port, before anything is downloaded."""
    if target.exists() and (not target.is_dir() or any(p.name not in ignore for p in target.iterdir())):
        raise ConfigError(f"--target-dir {target} is not empty: give a new or empty folder")
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(f"port {port} is in use: give another with --port") from None
    groups_to_reach(target, server_user())


def server_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: then the data belongs to, and the server runs as, `postgres`."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigError("running as root, but there is no `postgres` user to run the restored server") from None


def groups_to_reach(folder: Path, user: pwd.struct_passwd | None) -> list[int]:
    """The groups the server's user also needs to pass through the folders above `folder` (Docker's data root
    is open to its group only); a folder closed to it is a clear error, before anything is downloaded."""
    if user is None:
        return []
    own = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    needed: set[int] = set()
    for above in folder.resolve().parents:
        mode = above.stat()
        if mode.st_uid == user.pw_uid and mode.st_mode & 0o100 or mode.st_mode & 0o001:
            continue
        if not mode.st_mode & 0o010:
            raise ConfigError(f"{above} is closed to the {user.pw_name} user that runs the recovered server")
        if mode.st_gid not in own:
            needed.add(mode.st_gid)
    return sorted(needed)


def _as_server(data: Path) -> dict[str, Any]:
    """subprocess arguments that run a command as the server's user, able to reach `data`."""
    user = server_user()
    if user is None:
        return {}
    return {"user": user.pw_name, "extra_groups": groups_to_reach(data.parent, user) or None}


def _give(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for item in [path, *path.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):  # a WAL file the feed was renaming (it gives its own)
            os.chown(item, user.pw_uid, user.pw_gid, follow_symlinks=False)


def unpack_base(storage: Storage, manifest: Manifest, identities: list[Any], data: Path) -> int:
    """Stream the base backup from storage into the new folder `data` in one pass: decrypted, decompressed and
    unpacked as it arrives, each member checked before it is written, nothing written outside `data`, its size
    and sha256 checked at the end. When this raises, what is in `data` is garbage: the caller removes it.
    The files unpacked."""
    what = f"base backup {manifest.id}"
    data.mkdir(parents=True, exist_ok=True)
    try:
        with streamed(
            storage, manifest.data_key, manifest.size, manifest.sha256, identities, manifest.compression, what
        ) as source:
            done = safe_tar.extract_once(source, data, what)
    except (ValueError, zstandard.ZstdError, zlib.error) as exc:
        raise CheckFailed("base", f"{what} does not decompress: {exc}") from None
    data.chmod(0o700)
    return done.entries


@dataclass(frozen=True)
class WalPlan:
    """The WAL files storage holds for a recovery from a base backup: timeline histories (fetched already: the
    server reads them all as it starts) and the segments from the base backup's first on, in the order the
    recovery asks for them (fetched while it runs, physical/feed.py)."""

    histories: list[str]
    segments: list[str]


def plan_wal(
    storage: Storage, manifest: Manifest, identities: list[Any], data: Path, folder: Path, latest: bool
) -> WalPlan:
    """List the WAL after the base backup (unpacked in `data`), fetch the timeline histories into `folder` (a
    damaged one fails at once) and leave there the restore_command script that waits for the segments. Only
    the segments on the recovery's timeline path: another timeline's (a split brain, a stale partial) are never
    handed to the server, nor fetched."""
    assert manifest.physical is not None
    start = manifest.physical.start_wal
    archived = {a.name for a in wal.archived(storage)}
    names = archived | {p.name for p in wal.partials(storage) if not _superseded(p.name, archived)}
    histories = sorted(n for n in names if n.endswith(".history"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in histories:
        wal.fetch(storage, name, folder / name, identities, durable=False)
    path = gaps.timeline_path(folder, int(start[:8], 16))
    size = gaps.segment_bytes([data / "pg_wal"])
    wanted = (n for n in names if len(n) == 24 and n[8:] >= start[8:] and gaps.on_path(n, path, size))
    segments = sorted(wanted, key=feed.order)
    feed.prepare(folder, histories, segments, latest)
    return WalPlan(histories, segments)


def check_gaps(
    storage: Storage,
    manifest: Manifest,
    identities: list[Any],
    data: Path,
    folder: Path,
    to: datetime | None,
    bin_dir: Path,
    zone: Any,
    stored: set[str],
) -> None:
    """A gap in the WAL (of `stored`) the recovery to `to` needs is one line before the server starts
    (gaps.check_wal); the segments before it are fetched into `folder` to tell when their last transaction ended."""
    assert manifest.physical is not None

    def fetch(name: str) -> None:
        with contextlib.suppress(CheckFailed):
            wal.fetch(storage, name, folder / name, identities, durable=False)

    gaps.check_wal(data, folder, manifest.physical.start_wal, to, bin_dir, storage.url, zone, stored, fetch)


def _superseded(partial: str, archived: set[str]) -> bool:
    """A partial segment with whole segments after it on its timeline (a replica whose copy of the whole one
    failed) is not the end of the WAL: replaying it would stop short there, so it is left out (a gap)."""
    return any(len(n) == 24 and n[:8] == partial[:8] and n[8:] > partial[8:] for n in archived)


def configure(data: Path, folder: Path, to: datetime | None, port: int | None, seen_as: Path | None = None) -> None:
    """Recovery settings: WAL handed over from `folder` (physical/feed.py; `seen_as` is its path as the server
    sees it, in a container), stop at `to` (else at the end of the WAL), then promote. Without `port` the server
    listens as it is told to (a container's own settings)."""
    lines = [
        "restore_command = '" + feed.restore_command(seen_as or folder).replace("'", "''") + "'",  # a conf string
        "recovery_target_action = 'promote'",
        "recovery_target_timeline = 'latest'",
        "archive_mode = 'off'",
    ]
    if port is not None:
        lines += [f"port = {port}", "listen_addresses = '127.0.0.1'"]
    else:  # in a container: its log is what `docker logs` shows, which is how the end of the recovery is seen
        lines.append("logging_collector = 'off'")
    if to is not None:
        lines.append(f"recovery_target_time = '{to.isoformat()}'")
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write(f"\n{MARK}\n" + "\n".join(lines) + "\n")
    (data / "recovery.signal").touch()
    for stale in ("postmaster.pid", "standby.signal"):
        (data / stale).unlink(missing_ok=True)


def start(data: Path, folder: Path, bin_dir: Path, timeout: float, watch: Callable[[], None] = lambda: None) -> Path:
    """Start the recovered server and wait until recovery reached its target and it was promoted; its log.
    A recovery that stopped short is a failure, never a quietly older database. `watch` raises when what feeds
    the recovery failed."""
    user = server_user()
    log = data.parent / "recovery.log"
    log.touch()
    if user is not None:  # the server must reach its data through the folder above it too
        os.chown(data.parent, user.pw_uid, user.pw_gid)
    for path in (data, folder, log):
        _give(path, user)
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "start"]
    done = subprocess.run(pg_ctl, capture_output=True, text=True, timeout=60, **_as_server(data))
    if done.returncode != 0:
        tail = " ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise CheckFailed("pitr", f"the recovered server did not start: {done.stderr.strip()} {tail}".strip())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watch()
        said = log.read_text(errors="replace")
        if promoted(said):
            return log
        if not (data / "postmaster.pid").exists() and "FATAL" in said:
            raise CheckFailed("pitr", stopped_short(said))
        time.sleep(0.2)
    raise CheckFailed("pitr", f"the recovered server did not finish its recovery in {timeout:.0f} s; see {log}")


def promoted(said: str) -> bool:
    """Whether the recovering server's log says it reached its target and was promoted; one that stopped short
    (or panicked) is a failure, never a quietly older database."""
    if SHORT in said or "FATAL" in said and "PANIC" in said:
        raise CheckFailed("pitr", stopped_short(said))
    return READY in said


def stopped_short(said: str) -> str:
    """Where the recovery got to, from the server's log, and what PostgreSQL said when it stopped short."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    redo = [m.group(1) for m in (re.search(r"redo done at ([0-9A-F]+/[0-9A-F]+)", line) for line in lines) if m]
    when = [line.split("log time", 1)[1].strip() for line in lines if "last completed transaction" in line]
    fatal = [line.split("FATAL:", 1)[-1].strip() for line in lines if "FATAL" in line]
    got = f"the recovery stopped at {redo[-1]}" if redo else "the recovery stopped"
    got += f" (its last transaction at {when[-1]})" if when else ""
    if fatal and SHORT in fatal[-1]:
        return (
            f"{got}, short of the target: the WAL it could read has no transaction ending after the target "
            "(`--latest` recovers all the archive holds)"
        )
    return f"{got} before reaching the target: {fatal[-1] if fatal else 'see the recovery log'}"


def stop(data: Path, bin_dir: Path) -> None:
    subprocess.run(
        [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
        capture_output=True,
        check=False,
        **_as_server(data),
    )


def recovered_url(source_url: str, port: int) -> str:
    """The source's database and login on the recovered server (the same roles and passwords)."""
    target, params = postgres.parse(source_url)
    password = params.get("password")
    login = f"{target.user}:{password}" if password else target.user
    return f"postgresql://{login}@127.0.0.1:{port}/{target.database}"


def remove(target: Path, created: bool) -> None:
    """What a failed restore put into `target` (it was empty or new): gone, and the folder too if it made it."""
    for child in list(target.iterdir()) if target.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    if created:
        shutil.rmtree(target, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PitrRequest(BaseModel):
    """Where and to when: a new data directory, a port, a time (WIB unless it names its zone) or the latest."""

    model_config = ConfigDict(frozen=True)

    to: WibTime = Field(
        default=None,
        description="The moment to bring the database back to, in WIB, e.g. 2026-12-01 10:30:59 (the second "
        "before a mistake). Leave empty with 'latest' ticked for the newest state in storage.",
    )
    latest: bool = Field(default=False, description="Recover everything archived, to the newest WAL in storage.")
    target_dir: Text = Field(
        default=None,
        description="Required: a new or empty folder for the recovered server's data, e.g. /srv/pitr. The running "
        "database is not touched.",
    )
    port: int = Field(default=0, ge=0, le=65535, description="The port it listens on; 0: a free one.")
    replace: bool = Field(
        default=False,
        description="Put the recovered data in place of the database container (DB_CONTAINER): the services and "
        "the database are stopped, its data moved aside (kept), the recovered data moved in, all started again. "
        "Leave the folder empty: the recovery runs beside the container's data.",
    )
    confirm: bool = Field(default=False, description="Tick to confirm replacing the running database's data.")
