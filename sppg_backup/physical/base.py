"""Base backups: pg_basebackup over a plain replication connection (nothing installed on the database host but a
role with REPLICATION), its tar streamed through zstd and age into every copy in one pass, never whole on disk.

The WAL from the backup's start to its end is fetched into the tar (`-X fetch`), so a base backup is consistent
by itself, whatever the WAL archive holds; the archive takes it on from its end to any later second.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import psycopg
from psycopg.pq import ExecStatus

from sppg_backup import __version__, keys
from sppg_backup.claims import free_id, release_id
from sppg_backup.db import postgres
from sppg_backup.db.catalog import Manifest, Physical, Source, manifest_key
from sppg_backup.errors import PermanentError
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage
from sppg_backup.storage.destinations import Destinations
from sppg_backup.stream import crypto, pack

START = re.compile(r"write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)")
END = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")
SEGMENT_BYTES = 16 << 20  # initdb's default; the tar's pg_wal/ names the real segments


@dataclass(frozen=True)
class System:
    identifier: str
    timeline: int
    position: str  # where the server's WAL is now


def refused(exc: Exception, target: postgres.Target) -> Exception:
    """A replication connection that was refused, as the one thing to change on the database server."""
    low = str(exc).lower()
    if "replication role" in low or "must be superuser" in low:
        return PermanentError(
            f"database {target.label}: user {target.user} may not replicate; run ALTER ROLE {target.user} REPLICATION "
            "on the server, or set SPPG_BACKUP_REPLICATION_URL to a role that may"
        )
    if "pg_hba.conf" in low and "replication" in low:
        return PermanentError(
            f"database {target.label} refuses replication connections for {target.user}: add the line `host "
            f"replication {target.user} <this host>/32 scram-sha-256` to pg_hba.conf and reload the server"
        )
    if "max_wal_senders" in low or "standby connections" in low:
        return PermanentError(
            f"database {target.label} takes no more replication connections: raise max_wal_senders (it is 0 or all "
            "are in use) and restart the server"
        )
    return postgres.explain(exc, target)


def identify(url: str) -> System:
    """IDENTIFY_SYSTEM over a replication connection: proves the role may replicate and names the cluster."""
    target, params = postgres.parse(url)
    params.setdefault("connect_timeout", postgres.CONNECT_TIMEOUT)
    try:
        conn = psycopg.connect(**params, replication="database", autocommit=True)
    except psycopg.Error as exc:
        raise refused(exc, target) from None
    with conn:
        result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")  # the replication protocol takes simple queries only
        if result.status != ExecStatus.TUPLES_OK:
            message = (result.error_message or b"").decode(errors="replace").strip()
            raise PermanentError(f"database {target.label}: IDENTIFY_SYSTEM failed: {message}")
        values = [(result.get_value(0, i) or b"").decode() for i in range(3)]
    return System(values[0], int(values[1]), values[2])


def segment_name(timeline: int, lsn: str, segment_bytes: int = SEGMENT_BYTES) -> str:
    """The WAL segment file holding `lsn` (e.g. 0/2000028 on timeline 1 -> 000000010000000000000002)."""
    high, low = (int(part, 16) for part in lsn.split("/"))
    number = ((high << 32) | low) // segment_bytes
    per_id = 0x100000000 // segment_bytes
    return f"{timeline:08X}{number // per_id:08X}{number % per_id:08X}"


@dataclass
class Taken:
    """What pg_basebackup said about the backup it made, filled when its block ends."""

    tool_version: str
    start_lsn: str = ""
    end_lsn: str = ""
    timeline: int = 0


@contextmanager
def basebackup(url: str, bin_dir: Any = None) -> Iterator[tuple[IO[bytes], Taken]]:
    """Run pg_basebackup (tar to stdout, fast checkpoint, its WAL inside); yield its output and what it took.

    Its failure raises when the block exits, so the caller commits what it wrote only after that.
    """
    info = postgres.server_info(url)
    tool, version = postgres.find_tool("pg_basebackup", info.major, bin_dir)
    conninfo, env = postgres.libpq_env(url)
    command = [tool, "-d", conninfo, "-D", "-", "-F", "t", "-X", "fetch", "--checkpoint=fast", "-v", "--no-password"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    errors = postgres.StderrTail(proc.stderr)
    taken = Taken(version)
    try:
        yield proc.stdout, taken
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        code = proc.wait()
    said = errors.text()
    if code != 0:
        raise (
            refused(PermanentError(said), info.target)
            if "replication" in said.lower()
            else PermanentError(f"pg_basebackup of {info.target.label} failed (exit {code}): {said}")
        )
    start, end = START.search(said), END.search(said)
    if start is None or end is None:
        raise PermanentError(f"pg_basebackup of {info.target.label} did not say where its WAL starts and ends: {said}")
    taken.start_lsn, taken.timeline, taken.end_lsn = start.group(1), int(start.group(2)), end.group(1)


def reserve_id(storage: Storage, now: datetime) -> str:
    return free_id(storage, now, keys.base_id, lambda backup_id: manifest_key("base", backup_id))


def back_up(settings: Settings, dest: Destinations, backup_id: str, who: dict[str, str] | None = None) -> Manifest:
    """pg_basebackup, compressed, encrypted and stored to every copy in one pass; the manifest, not yet
    published. Nothing becomes visible unless pg_basebackup and every copy finished; a failure gives the id up."""
    try:
        return _back_up(settings, dest, backup_id, who)
    except BaseException:
        release_id(dest.storage, manifest_key("base", backup_id))
        raise


def _back_up(settings: Settings, dest: Destinations, backup_id: str, who: dict[str, str] | None) -> Manifest:
    recipients = settings.require_recipients()
    crypto.recipients(recipients)  # a bad key fails before pg_basebackup starts
    url = settings.replication_target
    system = identify(url)
    started = datetime.now(UTC)
    clock = time.monotonic()
    key = keys.base_data(backup_id, settings.compression, bool(recipients))
    copies = pack.Copies(dest, key)
    try:
        with basebackup(url, settings.pg_bin_dir) as (stream, taken):
            copies.write(stream, settings.compression, settings.compression_level, recipients)
    except BaseException:
        copies.abort()
        raise
    stored = copies.commit(f"base backup {backup_id}")
    target, _ = postgres.parse(url)
    return Manifest(
        id=backup_id,
        kind="base",
        created_at=started,
        finished_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
        source=Source(host=target.host, port=target.port, database=target.database, user=target.user),
        server_version=postgres.server_info(url).version,
        pg_dump_version="",
        format="pg_basebackup-tar",
        compression=settings.compression,
        encryption="age" if recipients else "none",
        recipients=recipients,
        data_key=key,
        size=stored.size,
        sha256=stored.sha256 or "",
        tables={},
        created_by=who or {},
        tool_version=__version__,
        physical=Physical(
            system_identifier=system.identifier,
            timeline=taken.timeline,
            start_lsn=taken.start_lsn,
            end_lsn=taken.end_lsn,
            start_wal=segment_name(taken.timeline, taken.start_lsn),
            pg_basebackup_version=taken.tool_version,
        ),
    )
