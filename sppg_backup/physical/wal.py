"""The WAL archive in storage: every WAL file under its name and the sha256 of its content, zstd-compressed and
age-encrypted like everything else, so a fresh host lists and fetches it with the bucket and the key alone.

`push` is PostgreSQL's archive_command (and the receiver's upload); `fetch` its restore_command. A name is
archived once: the same content again is already done, other content under the same name is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import zstandard

from sppg_backup import keys
from sppg_backup.errors import CheckFailed, ConfigError, NotFoundError, PermanentError
from sppg_backup.storage import Storage
from sppg_backup.storage.base import file_sha256
from sppg_backup.stream.pack import store_packed, unpack

NAME = re.compile(r"^([0-9A-F]{24}|[0-9A-F]{8}\.history|[0-9A-F]{24}\.[0-9A-F]{8}\.backup)$")


@dataclass(frozen=True)
class Archived:
    name: str
    sha256: str
    key: str
    size: int
    updated: datetime


def check_name(name: str) -> str:
    """Only WAL file names: a name read from storage or given by PostgreSQL never becomes a path elsewhere."""
    if not NAME.match(name):
        raise ConfigError(f"{name!r} is not a WAL file name (a segment, a timeline history or a backup history)")
    return name


def find(storage: Storage, name: str) -> list[Archived]:
    """The stored copies of WAL file `name` (one, unless storage was written to by hand)."""
    found = []
    for obj in storage.list(keys.wal_prefix(check_name(name))):
        stored, sha256 = keys.wal_parts(obj.key)
        if stored == name and re.fullmatch(r"[0-9a-f]{64}", sha256):
            found.append(Archived(name, sha256, obj.key, obj.size, obj.updated))
    return found


def archived(storage: Storage) -> list[Archived]:
    """Every WAL file in storage, by name."""
    found = []
    for obj in storage.list(keys.WAL):
        try:
            name, sha256 = keys.wal_parts(obj.key)
        except ValueError:
            continue
        if NAME.match(name) and re.fullmatch(r"[0-9a-f]{64}", sha256):
            found.append(Archived(name, sha256, obj.key, obj.size, obj.updated))
    return sorted(found, key=lambda a: a.name)


def partials(storage: Storage) -> list[Archived]:
    """The segments the receiver was still writing at its last upload (sha256: 'partial')."""
    found = []
    for obj in storage.list(keys.WAL):
        with contextlib.suppress(ValueError):
            name, tag = keys.wal_parts(obj.key)
            if tag == "partial" and NAME.match(name):
                found.append(Archived(name, tag, obj.key, obj.size, obj.updated))
    return sorted(found, key=lambda a: a.name)


def push(storage: Storage, path: Path, recipients: list[str], level: int | None = None) -> tuple[str, bool]:
    """Archive the WAL file at `path`: its key, and whether it was stored now (False: already there, the same).
    Returns only once the object is complete in storage; other content already under its name is refused."""
    name = check_name(path.name)
    sha256 = file_sha256(path)
    for copy in find(storage, name):
        if copy.sha256 == sha256:
            return copy.key, False
        raise PermanentError(
            f"WAL {name} is already archived with other content (stored sha256 {copy.sha256[:16]}..., this file "
            f"{sha256[:16]}...): not overwritten; two servers may be archiving into the same storage"
        )
    key = keys.wal_object(name, sha256, bool(recipients))
    with open(path, "rb") as source:
        store_packed(storage, key, source, recipients, level)
    return key, True


def fetch(storage: Storage, name: str, dest: Path, identities: list[Any], durable: bool = True) -> None:
    """Write WAL file `name` to `dest` (decrypted, decompressed, its sha256 checked), whole or not at all, and
    on disk before it has its name unless not `durable` (a restore's own folder: a crash redoes the restore).
    NotFoundError when it was never archived."""
    copies = find(storage, name)
    if not copies:
        writing = [p for p in partials(storage) if p.name == name]
        if not writing:
            raise NotFoundError(f"WAL {name} is not in {storage.url}")
        # The newest WAL there is: the segment the receiver was writing, as far as it got (zero-padded).
        copies = writing
    if len(copies) > 1:
        raise PermanentError(f"WAL {name} is in {storage.url} {len(copies)} times with different content")
    copy = copies[0]
    partial = dest.with_name(f".{dest.name}.fetching-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with storage.open_read(copy.key) as raw, open(partial, "wb") as out:

            class Checked:
                def write(self, data: bytes) -> int:
                    digest.update(data)
                    return out.write(data)

            try:
                unpack(raw, Checked(), "zstd", copy.key.endswith(".age"), identities)
            except PermanentError as exc:  # cannot decrypt: a damaged object or another key
                raise CheckFailed("wal", f"WAL {name} in {storage.describe(copy.key)}: {exc}") from None
            except (ValueError, zstandard.ZstdError) as exc:
                raise CheckFailed("wal", f"WAL {name} in {storage.describe(copy.key)} is damaged: {exc}") from None
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if copy.sha256 != "partial" and digest.hexdigest() != copy.sha256:
            raise CheckFailed(
                "sha256",
                f"WAL {name} in {storage.describe(copy.key)} is corrupt: its content does not match its sha256",
            )
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
