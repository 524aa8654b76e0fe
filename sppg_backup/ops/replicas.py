"""Replicas of the storage in another region (scenario 3: the region of the bucket is gone): every object the
storage holds copied to each replica, checked by size and sha256, manifests last so a replica never lists a
backup whose parts it lacks. A replica is only ever added to: what the primary's retention deletes is deleted
on it by prune (`mirrored`), nothing else ever is, so an object the primary loses is not lost twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sppg_backup import keys
from sppg_backup.errors import BackupError, CheckFailed, NotFoundError
from sppg_backup.ops.audit import AuditTrail
from sppg_backup.storage import Storage
from sppg_backup.storage.base import ObjectInfo

CHUNK = 1 << 20
log = logging.getLogger(__name__)


def replicated(key: str) -> bool:
    """Backups, not the primary's bookkeeping: an id claimed while a backup is made, a snapshot's running lease,
    the primary's alert state (the DR host keeps its own)."""
    return (
        not key.endswith(keys.CLAIM_SUFFIX)
        and "/running/" not in key
        and key != keys.HEALTH_STATE
        and not key.startswith("rekey/")  # a key rotation's objects on their way (ops/rekey.py)
    )


def order(key: str) -> tuple[int, str]:
    """Contents first, then the manifests that list them, then the full-system sets that name those."""
    if key.endswith(keys.MANIFEST_SUFFIX):
        return (2 if key.startswith("full/") else 1, key)
    return (0, key)


@dataclass
class Replicated:
    """What one pass did to one replica."""

    replica: str
    copied: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # held there with other content: copied again
    failed: list[str] = field(default_factory=list)  # "key: why", one line each
    checked: int = 0
    bytes_copied: int = 0
    behind_since: datetime | None = None  # when the oldest object still missing there was made
    superseded: list[str] = field(default_factory=list)  # partial WAL segments whose whole segment is there

    @property
    def ok(self) -> bool:
        return not self.failed


def _differs(source: ObjectInfo, held: ObjectInfo | None) -> bool:
    """Missing, or other content: by sha256 where both sides list one (buckets), else another size or rewritten
    on the primary after it was copied (a manifest gets its verification)."""
    if held is None:
        return True
    if source.sha256 and held.sha256:
        return source.sha256 != held.sha256
    return source.size != held.size or source.updated > held.updated


def _sha256_of(storage: Storage, key: str) -> str:
    digest = hashlib.sha256()
    with storage.open_read(key) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_sha256(storage: Storage, listed: ObjectInfo) -> str | None:
    """The sha256 recorded when the object was written (a bucket lists it; a folder keeps it beside the file)."""
    return listed.sha256 or storage.stat(listed.key).sha256


def copy_object(primary: Storage, replica: Storage, listed: ObjectInfo) -> int:
    """Stream one object across, checked: what arrived has the size and sha256 of what was read, and that is the
    sha256 the primary recorded for it (a damaged object on the primary is not spread). Its size."""
    key, recorded = listed.key, recorded_sha256(primary, listed)
    digest, size = hashlib.sha256(), 0
    upload = replica.open_write(key)
    try:
        with primary.open_read(key) as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                upload.write(chunk)
        if recorded and recorded != digest.hexdigest() and primary.stat(key).sha256 != digest.hexdigest():
            raise CheckFailed("sha256", f"{primary.describe(key)} does not match its recorded sha256: not copied")
        stored = upload.commit()
    except BaseException:
        upload.abort()
        raise
    if stored.size != size or (stored.sha256 and stored.sha256 != digest.hexdigest()):
        raise CheckFailed("sha256", f"the copy at {replica.describe(key)} differs from what was sent")
    return size


def copy_new(primary: Storage, replicas: tuple[Storage, ...], new_keys: list[str]) -> list[str]:
    """Objects just stored (the WAL the receiver or `wal push` uploaded) copied to every replica at once, so the
    DR region's RPO is the receiver's, not replicate-backups' 15 minutes. What failed, one line each: the
    next replicate-backups run copies it; the primary has it, so it never fails the upload."""
    problems = []
    for replica in replicas:
        for key in new_keys:
            try:
                copy_object(primary, replica, primary.stat(key))
            except NotFoundError:
                continue  # superseded meanwhile (a partial segment finished)
            except (BackupError, OSError) as exc:
                problems.append(f"{replica.describe(key)}: {' '.join(str(exc).split())}")
    return problems


class Copier:
    """copy_new in a thread of its own, so a slow replica never holds up the uploads to the storage; of a key
    submitted again before it was copied (the segment being written), only the newest upload is copied."""

    def __init__(self, primary: Storage, replicas: tuple[Storage, ...], warn: Callable[[str], None]) -> None:
        self.primary, self.replicas, self.warn = primary, replicas, warn
        self._pending: dict[str, None] = {}  # ordered: the oldest first
        self._lock, self._wake, self._closing = threading.Lock(), threading.Event(), False
        self._thread = threading.Thread(target=self._run, name="replica-copier", daemon=True)
        self._thread.start()

    def submit(self, new_keys: list[str]) -> None:
        with self._lock:
            for key in new_keys:
                self._pending.pop(key, None)
                self._pending[key] = None
        self._wake.set()

    def close(self, timeout: float = 120) -> None:
        """Copy what is pending (for at most `timeout` seconds), then stop."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                batch, self._pending = list(self._pending), {}
                if not self._closing:  # closing: stay awake until nothing is left
                    self._wake.clear()
            if not batch and self._closing:
                return
            for problem in copy_new(self.primary, self.replicas, batch):
                self.warn(problem)


def damaged_copies(primary: Storage, replica: Storage, source: dict[str, ObjectInfo]) -> list[str]:
    """The replica's copies read back: the keys whose content is not what the primary recorded."""
    damaged = []
    for key, listed in source.items():
        recorded = recorded_sha256(primary, listed)
        try:
            if recorded and _sha256_of(replica, key) != recorded:
                damaged.append(key)
        except NotFoundError:
            continue  # not there yet: copied below
    return damaged


def replicate(
    primary: Storage, replica: Storage, verify: bool = False, prefixes: tuple[str, ...] = ("",)
) -> Replicated:
    """Copy to `replica` whatever it lacks or holds different under `prefixes` (all: ""); with `verify`, every
    copy there is read back first and a damaged one copied again. One object that fails is noted and the rest
    still go."""
    done = Replicated(replica.url)
    source = {o.key: o for prefix in prefixes for o in primary.list(prefix) if replicated(o.key)}
    held = {o.key: o for prefix in prefixes for o in replica.list(prefix)}
    damaged = set(damaged_copies(primary, replica, source)) if verify else set()
    todo = sorted((k for k, o in source.items() if k in damaged or _differs(o, held.get(k))), key=order)
    done.checked = len(source)
    failed: list[str] = []
    gone: set[str] = set()
    for key in todo:
        if key.endswith(keys.MANIFEST_SUFFIX) and lacks_parts(key, failed):
            done.failed.append(f"{key}: not copied, a part it lists could not be")
            continue
        try:
            done.bytes_copied += copy_object(primary, replica, source[key])
        except NotFoundError:
            gone.add(key)  # deleted from the primary since it was listed (a WAL segment completed, a prune)
            continue
        except BackupError as exc:
            failed.append(key)
            done.failed.append(f"{key}: {' '.join(str(exc).split())}")
            continue
        (done.repaired if key in held else done.copied).append(key)
    arrived = set(done.copied) | set(done.repaired) | gone
    done.behind_since = min((source[k].updated for k in todo if k not in arrived), default=None)
    done.superseded = drop_superseded(replica, source, set(held) | arrived)
    return done


def drop_superseded(replica: Storage, source: dict[str, ObjectInfo], held: set[str]) -> list[str]:
    """The receiver replaces the segment it is writing (`.partial`) by the whole segment and deletes the partial:
    a copied partial whose whole segment the replica holds, and which the storage no longer has, goes too (it
    would stay for ever, one per segment). Nothing else is ever deleted here."""
    whole: set[str] = set()
    partial: dict[str, str] = {}
    for key in held:
        if not key.startswith(keys.WAL):
            continue
        try:
            name, tag = keys.wal_parts(key)
        except ValueError:
            continue
        if tag == "partial":
            partial[name] = key
        else:
            whole.add(name)
    dropped = []
    for name, key in partial.items():
        if name in whole and key not in source:
            try:
                replica.delete(key)
            except BackupError:
                continue
            dropped.append(key)
    return dropped


def lacks_parts(manifest: str, failed: list[str]) -> bool:
    """A manifest whose contents did not all arrive in this pass: a dump's or base backup's own data (the same
    stem), any blob or index of a snapshot's kind, anything at all for a full-system set (it names the others)."""
    if manifest.startswith("full/"):
        return bool(failed)
    kind = manifest.split("/", 1)[0]
    return any(
        keys.stem(key) == keys.stem(manifest) or key.startswith(f"{kind}/blobs") or key.startswith(f"{kind}/indexes")
        for key in failed
    )


def lag_seconds(behind_since: datetime | None, now: datetime) -> float:
    """How far a replica is behind: the age of the oldest object it lacks; 0 when it has everything."""
    return 0.0 if behind_since is None else max(0.0, (now - behind_since).total_seconds())


def behind_since(primary: Storage, replica: Storage) -> datetime | None:
    """When the oldest object the replica lacks (or holds older) was made on the primary; None: it has all."""
    held = {o.key: o for o in replica.list("")}
    lacking = [o.updated for o in primary.list("") if replicated(o.key) and _differs(o, held.get(o.key))]
    return min(lacking, default=None)


class MirroredDeletes:
    """The primary storage for retention: what it deleted goes on every replica too, audited there. Only once the
    primary's delete is done (a delete the primary refused leaves the replicas alone); a replica that refuses one
    key of a backup keeps the rest of that backup too (its manifest goes first: never a listed backup without
    its data), with one line in the log: more kept, never less."""

    def __init__(self, primary: Storage, replicas: tuple[Storage, ...], audit: AuditTrail) -> None:
        self._primary, self._replicas, self._audit = primary, replicas, audit
        self._refused: set[tuple[str, str]] = set()  # (replica, stem) that kept something

    def __getattr__(self, name: str) -> Any:
        return getattr(self._primary, name)

    def delete(self, key: str) -> None:
        try:
            self._primary.delete(key)
        except NotFoundError:
            self._mirror(key)  # already gone here: retention still wants it gone there
            raise
        self._mirror(key)

    def _mirror(self, key: str) -> None:
        for replica in self._replicas:
            if (replica.url, keys.stem(key)) in self._refused:
                log.warning("replica kept %s: an earlier part of the same backup could not be deleted", key)
                continue
            try:
                replica.delete(key)
            except NotFoundError:
                continue
            except BackupError as exc:
                self._refused.add((replica.url, keys.stem(key)))
                log.warning("replica kept %s: %s", replica.describe(key), exc)
                continue
            self._audit.record("prune.delete", key, "deleted", location=replica.describe(key))


def mirrored(primary: Storage, replicas: tuple[Storage, ...], audit: AuditTrail) -> Storage:
    return primary if not replicas else cast(Storage, MirroredDeletes(primary, replicas, audit))
