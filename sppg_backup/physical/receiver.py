"""The WAL receiver: pg_receivewal on a replication slot into a local spool, every finished WAL file pushed to
storage and then removed from the spool, the segment being written uploaded at least every
WAL_UPLOAD_INTERVAL_SECONDS. A long-running process, not a flow.

The slot keeps on the server every WAL byte not yet flushed here, so a receiver killed at any moment resumes
with no gap; pg_receivewal restarts when the connection drops; SIGTERM uploads what it has, then ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppg_backup import keys
from sppg_backup.db import postgres
from sppg_backup.errors import BackupError, NotFoundError, PermanentError
from sppg_backup.ops import metrics
from sppg_backup.ops.replicas import Copier
from sppg_backup.physical import wal
from sppg_backup.physical.base import refused
from sppg_backup.settings import Settings
from sppg_backup.storage import Storage
from sppg_backup.storage.base import file_sha256
from sppg_backup.stream.pack import store_packed

log = logging.getLogger("sppg_backup.wal")
PARTIAL = ".partial"
PIDFILE = "receiver.pid"
MAX_BACKOFF = 30.0


def die_with_parent() -> None:
    """In the child: SIGTERM when the receiver dies, even by kill -9, so no pg_receivewal holds the slot."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def ensure_slot(url: str, slot: str, bin_dir: Path | None) -> None:
    """Create the physical replication slot when it is missing (it keeps the WAL the receiver has not got)."""
    info = postgres.server_info(url)
    tool, _ = postgres.find_tool("pg_receivewal", info.major, bin_dir)
    conninfo, env = postgres.libpq_env(url)
    done = subprocess.run(
        [tool, "-d", conninfo, "-S", slot, "--create-slot", "--if-not-exists", "--no-password"],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise refused(PermanentError(done.stderr.strip()), info.target)


@dataclass
class Receiver:
    settings: Settings
    storage: Storage
    recipients: list[str]
    partial_sent: dict[str, str] | None = None  # name -> sha256 of the partial segment last uploaded
    replicas: tuple[Storage, ...] = ()  # each upload is copied there too (REPLICA_URLS), in the background
    copier: Copier | None = None

    @property
    def spool(self) -> Path:
        return self.settings.wal_spool

    def command(self) -> tuple[list[str], dict[str, str]]:
        url = self.settings.replication_target
        info = postgres.server_info(url)
        tool, _ = postgres.find_tool("pg_receivewal", info.major, self.settings.pg_bin_dir)
        conninfo, env = postgres.libpq_env(url)
        slot = self.settings.replication_slot
        # --synchronous: flushed (and the slot moved on) as it arrives; -s 1: the server hears of it at once
        return [tool, "-d", conninfo, "-D", str(self.spool), "-S", slot, "--synchronous", "-n", "-s", "1"], env

    def stop_orphan(self) -> None:
        """A pg_receivewal left by a receiver killed before its child noticed: ended, so the slot is free."""
        pidfile = self.spool / PIDFILE
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            pid = int(pidfile.read_text())
            if b"pg_receivewal" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)
        pidfile.unlink(missing_ok=True)

    def start(self) -> subprocess.Popen[bytes]:
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.stop_orphan()
        ensure_slot(self.settings.replication_target, self.settings.replication_slot, self.settings.pg_bin_dir)
        command, env = self.command()
        child = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent
        )
        (self.spool / PIDFILE).write_text(str(child.pid))
        threading.Thread(target=_relay, args=(child,), daemon=True).start()
        return child

    def upload_finished(self) -> dict[str, str]:
        """Push every WAL file pg_receivewal has finished (complete segments, timeline histories), then drop it
        from the spool, and its partial upload from storage. The names pushed, and their keys."""
        pushed = {}
        for path in sorted(self.spool.iterdir()):
            if not wal.NAME.match(path.name):
                continue
            key, _ = wal.push(self.storage, path, self.recipients, self.settings.compression_level)
            with contextlib.suppress(NotFoundError):
                self.storage.delete(keys.wal_partial(path.name, bool(self.recipients)))
            path.unlink()
            pushed[path.name] = key
        return pushed

    def upload_partial(self) -> str | None:
        """The segment being written, uploaded when it changed since the last time: the RPO in storage."""
        sent = self.partial_sent if self.partial_sent is not None else {}
        self.partial_sent = sent
        for path in sorted(self.spool.glob("*" + PARTIAL)):
            name = path.name.removesuffix(PARTIAL)
            if not wal.NAME.match(name):
                continue
            try:
                sha256 = file_sha256(path)
                if sent.get(name) == sha256:
                    continue
                with open(path, "rb") as source:
                    store_packed(
                        self.storage, keys.wal_partial(name, bool(self.recipients)), source, self.recipients, level=1
                    )
            except FileNotFoundError:  # finished meanwhile: pushed whole at the next round
                continue
            sent[name] = sha256
            return name
        return None

    def run(self, stop: threading.Event, on_upload: Callable[[str], None] | None = None) -> None:
        """Receive until `stop` is set: then upload what there is and return."""
        if self.replicas:
            warn = "WAL not copied to a replica yet (replicate-backups will): %s"
            self.copier = Copier(self.storage, self.replicas, lambda problem: log.warning(warn, problem))
        try:
            self._receive(stop, on_upload)
        finally:
            if self.copier is not None:
                self.copier.close()

    def _receive(self, stop: threading.Event, on_upload: Callable[[str], None] | None) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                child = self.start()
            except BackupError as exc:
                log.error("cannot start receiving WAL: %s; trying again in %.0f s", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            try:
                while not stop.wait(self.settings.wal_upload_interval_seconds) and child.poll() is None:
                    self._upload(on_upload)
                    backoff = 1.0
            finally:
                if child.poll() is None:
                    child.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(10)
                (self.spool / PIDFILE).unlink(missing_ok=True)
                self._upload(on_upload)
            if not stop.is_set():
                log.warning("pg_receivewal ended (exit %s); starting it again in %.0f s", child.returncode, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _upload(self, on_upload: Callable[[str], None] | None) -> None:
        try:
            names = self.upload_finished()
            partial = self.upload_partial()
        except (BackupError, OSError) as exc:  # storage away for a moment: the spool keeps it for the next round
            log.error("WAL upload failed, kept in %s for the next try: %s", self.spool, exc)
            return
        if names or partial:
            now = {"backup_wal_last_archived_timestamp": time.time(), "backup_wal_archive_lag_seconds": 0}
            metrics.record(
                metrics.with_instance({"kind": "wal"}, self.settings.instance),
                now,
                self.settings.metrics_file,
                self.settings.pushgateway_url,
            )
        if self.copier is not None:
            self.copier.submit(
                [*names.values(), *([keys.wal_partial(partial, bool(self.recipients))] if partial else [])]
            )
        for name in [*names, *([partial + PARTIAL] if partial else [])]:
            if on_upload is not None:
                on_upload(name)


def _relay(child: subprocess.Popen[bytes]) -> None:
    assert child.stderr is not None
    for raw in child.stderr:
        line = raw.decode(errors="replace").strip()
        if line:
            log.warning("%s", line)


def status(settings: Settings, storage: Storage, now_ts: float) -> dict[str, Any]:
    """The newest WAL in storage and how far behind the server it is; what the slot holds on the server."""
    found = wal.archived(storage)
    partials = list(wal.partials(storage))
    newest = max([a.updated for a in found] + [p.updated for p in partials], default=None)
    facts: dict[str, Any] = {
        "newest_archived": found[-1].name if found else None,
        "newest_partial": partials[-1].name if partials else None,
        "newest_upload": newest.isoformat() if newest else None,
        "lag_seconds": round(now_ts - newest.timestamp(), 1) if newest else None,
    }
    with postgres.connect(settings.replication_target) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, active FROM pg_replication_slots "
            "WHERE slot_name = %s",
            [settings.replication_slot],
        ).fetchone()
    facts["slot"] = settings.replication_slot
    facts["slot_exists"] = row is not None
    facts["slot_retained_bytes"] = int(row[0]) if row and row[0] is not None else None
    facts["lag_bytes"] = facts["slot_retained_bytes"]
    facts["receiver_connected"] = bool(row[1]) if row else False
    return facts
