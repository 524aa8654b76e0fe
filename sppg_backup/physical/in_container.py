"""Point-in-time recovery run by the database's own container (a stock PostgreSQL image, on a new host): the
base backup unpacked into the container's empty data volume, the WAL fetched beside the data as the server asks
for it and handed over with a plain shell copy (physical/feed.py), then the container started. Nothing of
sppg-backup runs inside the container, and the host needs no PostgreSQL server of its own."""

from __future__ import annotations

import io
import pwd
import re
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sppg_backup.errors import CheckFailed, ConfigError
from sppg_backup.physical import pitr, replace

FOLDER = ".sppg-recovery-wal"  # inside the data folder: the one place on the volume the server can read
STOPPED_AT = re.compile(r"last completed transaction was at log time ([0-9-]+ [0-9:.]+(?:[+-][0-9:]+)?)")


@dataclass(frozen=True)
class Volume:
    """The container's data as this host sees it, PGDATA as the server sees it, and the user it runs as."""

    data: Path
    pgdata: PurePosixPath
    uid: int
    gid: int

    @property
    def folder(self) -> Path:
        return self.data / FOLDER

    @property
    def folder_inside(self) -> Path:
        return Path(self.pgdata / FOLDER)

    @property
    def owner(self) -> pwd.struct_passwd:
        return pwd.struct_passwd(("postgres", "x", self.uid, self.gid, "", "", ""))


def volume_of(container: Any) -> Volume:
    """Where the (created, not started) database container keeps its data; it must be empty: a new host."""
    container.reload()
    attrs = container.attrs
    data, mount, inside = replace.data_mount(attrs, container.name)
    if mount.get("Type") != "volume":
        raise ConfigError(
            f"{container.name} keeps its data in a bind mount ({mount.get('Source')}): recover server recovers only "
            "into a named volume (the Compose file's `volumes:`); recover with --from-dump"
        )
    if (data / "PG_VERSION").exists():
        raise ConfigError(
            f"the data of {container.name} ({data}) already holds a database: this is not a new host; "
            "`sppg-backup restore pitr --replace` recovers into a running one"
        )
    data.mkdir(parents=True, exist_ok=True)
    pgdata = PurePosixPath(mount["Destination"]) / inside if inside != "." else PurePosixPath(mount["Destination"])
    uid, gid = server_user(container)
    return Volume(data, pgdata, uid, gid)


def server_user(container: Any) -> tuple[int, int]:
    """The uid and gid the container's server runs as: its User when numeric, else `postgres` in the image's
    /etc/passwd (the stock image's entrypoint starts as root and runs the server as postgres)."""
    user = str(container.attrs.get("Config", {}).get("User") or "")
    name, _, group = user.partition(":")
    if name.isdigit():
        return int(name), int(group) if group.isdigit() else int(name)
    wanted = name or "postgres"
    try:
        stream, _ = container.get_archive("/etc/passwd")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            lines = member.read().decode(errors="replace").splitlines() if member else []
    except Exception:
        lines = []
    for line in lines:
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == wanted and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    raise ConfigError(f"{container.name}: no user {wanted} in its image to run the server as; set its `user:`")


def wait_recovered(container: Any, since: int, timeout: float, watch: Callable[[], None]) -> str:
    """Wait until the container's server finished its recovery and was promoted; what it logged. A recovery
    that stopped short or a server that exited is a failure, never a quietly older database."""
    deadline = time.monotonic() + timeout
    said = ""
    while time.monotonic() < deadline:
        watch()
        said = container.logs(since=since).decode(errors="replace")
        if pitr.promoted(said):
            return said
        container.reload()
        if container.status in ("exited", "dead") or container.attrs.get("RestartCount"):
            raise CheckFailed("pitr", f"{container.name} stopped during its recovery: {pitr.stopped_short(said)}")
        time.sleep(0.3)
    raise CheckFailed("pitr", f"{container.name} did not finish its recovery in {timeout:.0f} s")


def recovered_to(said: str) -> datetime | None:
    """When the last transaction the recovery replayed committed, from the server's log."""
    found = STOPPED_AT.findall(said)
    if not found:
        return None
    moment = datetime.fromisoformat(found[-1])
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def finish(volume: Volume) -> None:
    """After the promotion (the container stopped): the recovery's settings and WAL go, the data stays."""
    shutil.rmtree(volume.folder, ignore_errors=True)
    replace.tidy(volume.data, volume.uid, volume.gid)


def empty(volume: Volume) -> None:
    """What a failed recovery left in the volume: garbage, so a new run starts again from an empty one."""
    pitr.remove(volume.data, created=False)
