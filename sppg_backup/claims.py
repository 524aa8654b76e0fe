"""Ids claimed in storage: two runs in the same second never get the same id, and a killed run's claim is
found and cleaned."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sppg_backup import keys, processes
from sppg_backup.errors import BackupError, NotFoundError
from sppg_backup.storage import Storage, get_bytes


def free_id(storage: Storage, now: datetime, name: Callable[[datetime], str], key: Callable[[str], str]) -> str:
    """The id `name` gives `now`, claimed in storage with an atomic create (two runs in the same second never get
    the same id), moved on by a second while an earlier backup's manifest (`key`) or claim holds it."""
    moment = now
    claim = json.dumps({**processes.me(), "at": now.isoformat()}).encode()
    while True:
        candidate = name(moment)
        try:
            storage.stat(key(candidate))
        except NotFoundError:
            if storage.create(keys.claim(key(candidate)), claim):
                return candidate
        moment += timedelta(seconds=1)


def abandoned_claims(storage: Storage, prefixes: tuple[str, ...], remove: bool = False) -> list[str]:
    """Claims of ids whose run ended without publishing or giving them up (killed): on this host when its
    process is gone, from any host after a day."""
    found = []
    for prefix in prefixes:
        for obj in list(storage.list(prefix)):
            if not obj.key.endswith(keys.CLAIM_SUFFIX) or obj.key.count("/") != 1:
                continue
            try:
                ended = processes.gone(json.loads(get_bytes(storage, obj.key)))
            except (BackupError, ValueError):
                ended = None
            if ended or (ended is None and datetime.now(UTC) - obj.updated > timedelta(days=1)):
                found.append(storage.describe(obj.key))
                if remove:
                    with contextlib.suppress(NotFoundError):
                        storage.delete(obj.key)
    return found


def release_id(storage: Storage, manifest: str) -> None:
    """Drop the claim once the manifest holds the id (or the run gave it up)."""
    with contextlib.suppress(NotFoundError):
        storage.delete(keys.claim(manifest))
