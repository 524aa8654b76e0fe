"""Key rotation (the guide: yearly): every encrypted object of a storage re-encrypted to new recipients, streamed,
one at a time; afterwards the old key reads nothing.

Each object goes: decrypted with the current key and encrypted to the new recipients into `rekey/<key>` (never
next to it: no listing of backups or WAL ever sees it); the manifests naming it get its new size and sha256; then
it is moved over the old object. A run killed anywhere leaves the old object in place and readable with the old
key (the next run starts again from it, after removing `rekey/`), or the new one already moved in, matching its
manifest. An object the current key cannot open ("no matching keys") is one this rotation already did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sppg_backup import keys
from sppg_backup.db.catalog import Manifest, list_backups, write_manifest
from sppg_backup.errors import BackupError, ConfigError, NotFoundError, PermanentError
from sppg_backup.files.snapshots import list_snapshots
from sppg_backup.full.system import FullSet, list_sets
from sppg_backup.storage import Storage, put_bytes
from sppg_backup.stream import crypto
from sppg_backup.stream.pack import Produced

TEMP = "rekey/"
NOT_OURS = "No matching keys found"


@dataclass
class Rekeyed:
    """What one pass did to one storage."""

    location: str
    rewritten: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # not readable with the current key: done by an earlier run
    failed: list[str] = field(default_factory=list)  # "key: why"
    manifests: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def check_rotation(identities: list[Any], recipients: list[str]) -> None:
    """A rotation: new keys, none of which the current key file holds (the old key would still read it all)."""
    if not recipients:
        raise ConfigError("give the new public keys: --recipients age1...[,age1...]")
    crypto.recipients(recipients)  # each one a valid age public key, or one clear line
    ours = {str(identity.to_public()) for identity in identities}
    if ours & set(recipients):
        raise ConfigError(
            "SPPG_BACKUP_AGE_IDENTITY_FILE holds a key among the new recipients: for the rotation it must hold the "
            "old key only (the new one is for --verify-identity), and the new recipients must not include the old key"
        )


def encrypted_objects(storage: Storage) -> list[str]:
    """Every age-encrypted object: dumps, base backups, WAL, file and config blobs and indexes, full-set parts."""
    return sorted(
        o.key
        for o in storage.list("")
        if o.key.endswith(".age") and not o.key.startswith(TEMP) and not o.key.endswith(keys.CLAIM_SUFFIX)
    )


class Catalog:
    """The manifests that record an encrypted object's size and sha256 (dumps, base backups, full-set parts)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.backups: dict[str, Manifest] = {m.data_key: m for m in list_backups(storage, ("db", "base")).backups}
        self.sets: list[FullSet] = list_sets(storage)[0]

    def record(self, key: str, size: int, sha256: str, recipients: list[str]) -> int:
        """The new size and sha256 of `key` written into every manifest naming it; how many."""
        written = 0
        if key in self.backups:
            manifest = self.backups[key].model_copy(update={"size": size, "sha256": sha256, "recipients": recipients})
            write_manifest(self.storage, manifest)
            self.backups[key] = manifest
            written += 1
        for index, full in enumerate(self.sets):
            if any(part.key == key for part in full.parts):
                parts = [
                    p.model_copy(update={"size": size, "sha256": sha256}) if p.key == key else p for p in full.parts
                ]
                self.sets[index] = full.model_copy(update={"parts": parts})
                put_bytes(
                    self.storage, keys.full_manifest(full.id), self.sets[index].model_dump_json(indent=2).encode()
                )
                written += 1
        return written


def _reencrypt(storage: Storage, key: str, identities: list[Any], recipients: list[str]) -> tuple[int, str] | None:
    """`key` decrypted and encrypted to `recipients` into TEMP+key: its size and sha256; None when the current
    key cannot open it (no matching recipient: rekeyed already)."""
    upload = storage.open_write(TEMP + key)
    try:
        with storage.open_read(key) as raw:
            plain = Produced(lambda sink: crypto.decrypt(raw, sink, identities))
            try:
                crypto.encrypt(plain, upload, recipients)  # type: ignore[arg-type]
            except BaseException:
                if plain.error is not None:
                    raise plain.error from None
                raise
            finally:
                plain.close()
        info = upload.commit()
    except PermanentError as exc:
        upload.abort()
        if NOT_OURS in str(exc):
            return None
        raise
    except BaseException:
        upload.abort()
        raise
    assert info.sha256 is not None
    return info.size, info.sha256


def rekey(
    storage: Storage,
    identities: list[Any],
    recipients: list[str],
    audit: Callable[[str, str, dict[str, Any]], None],
    dry_run: bool = False,
) -> Rekeyed:
    """Re-encrypt every encrypted object of `storage` to `recipients`, one at a time (see the module's text)."""
    done = Rekeyed(storage.url)
    if not dry_run:  # what a killed run left on its way: the object it was for is still in place, whole
        # only a rekey writes there, one at a time: an upload not holding its lock is a dead one's, however new
        storage.abandoned_uploads(remove=True, prefix=TEMP, grace=0)
        for leftover in [o.key for o in storage.list(TEMP)]:
            storage.delete(leftover)
    objects = encrypted_objects(storage)
    if dry_run:
        done.rewritten = objects
        return done
    catalog = Catalog(storage)
    for key in objects:
        try:
            made = _reencrypt(storage, key, identities, recipients)
            if made is None:
                done.already.append(key)
                continue
            done.manifests += catalog.record(key, *made, recipients)
            storage.move(TEMP + key, key)
        except NotFoundError:
            continue  # gone since the listing (a prune, a finished WAL partial)
        except BackupError as exc:
            done.failed.append(f"{key}: {' '.join(str(exc).split())}")
            continue
        done.rewritten.append(key)
        audit("rekey", key, {"location": storage.describe(key)})
    done.manifests += _recorded_recipients(storage, recipients)
    return done


def _recorded_recipients(storage: Storage, recipients: list[str]) -> int:
    """File and config snapshots name their recipients (their blobs and index are named by their plain content,
    so nothing else in them changes), and so do the settings a full-system set records."""
    written = 0
    for kind in ("files", "config"):
        for snapshot in list_snapshots(storage, kind).snapshots:  # type: ignore[arg-type]
            if snapshot.encryption == "age" and snapshot.recipients != recipients:
                updated = snapshot.model_copy(update={"recipients": recipients})
                put_bytes(storage, keys.manifest(kind, snapshot.id), updated.model_dump_json(indent=2).encode())
                written += 1
    # A full-system set's recorded settings name them too: a server recovered from it encrypts to the new keys.
    for full in list_sets(storage)[0]:
        if full.taken_with.get("age_recipients") not in (None, recipients):
            taken = {**full.taken_with, "age_recipients": recipients}
            updated_set = full.model_copy(update={"taken_with": taken})
            put_bytes(storage, keys.full_manifest(full.id), updated_set.model_dump_json(indent=2).encode())
            written += 1
    return written


def verify_new_key(storage: Storage, new_identities: list[Any]) -> list[str]:
    """Every encrypted object decrypted whole with the new key; the ones it cannot read."""
    unreadable = []
    for key in encrypted_objects(storage):
        try:
            with storage.open_read(key) as raw:
                crypto.decrypt(raw, _Discard(), new_identities)
        except BackupError as exc:
            unreadable.append(f"{key}: {' '.join(str(exc).split())}")
    return unreadable


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)
