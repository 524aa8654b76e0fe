"""Append-only audit trail: one JSON line per backup, prune or restore action, also copied to storage."""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sppg_backup import keys
from sppg_backup.errors import BackupError, PermanentError
from sppg_backup.storage import Storage, put_bytes

log = logging.getLogger(__name__)


def actor(flow_run: str | None = None) -> dict[str, str]:
    """Who acts: OS user, host, and the Prefect flow run when there is one."""
    who = {"user": getpass.getuser(), "host": socket.gethostname()}
    if flow_run:
        who["flow_run"] = flow_run
    return who


class AuditTrail:
    def __init__(self, path: Path | None, storage: Storage | None = None, who: dict[str, str] | None = None) -> None:
        self.path = path
        self.storage = storage
        self.who = who or actor()

    def record(self, action: str, target: str, result: str, **details: Any) -> dict[str, Any]:
        """Write one record; raises if the local trail cannot be written (destructive steps must not go on)."""
        now = datetime.now(UTC)
        entry = {
            "at": now.isoformat(),
            "action": action,
            "target": target,
            "result": result,
            "actor": self.who,
            "details": details,
        }
        line = json.dumps(entry, default=str, sort_keys=True) + "\n"
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise PermanentError(f"cannot write audit trail {self.path}: {exc.strerror}") from None
        if self.storage is not None:
            key = keys.audit_record(now, action)
            try:
                put_bytes(self.storage, key, line.encode())
            except BackupError as exc:
                log.warning("audit record kept locally only, copy to storage failed: %s", exc)
        return entry


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
