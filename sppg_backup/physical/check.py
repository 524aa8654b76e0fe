"""A base backup proved on a scratch server: unpacked, checked file by file against pg_basebackup's own manifest
(pg_verifybackup), started, smoke-checked, removed. A base backup nobody started is not a backup."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from sppg_backup.db.catalog import Manifest, list_backups, manifest_key, read_manifest
from sppg_backup.errors import BackupError, CheckFailed, ConfigError, NotFoundError
from sppg_backup.physical import pitr
from sppg_backup.storage import Storage

CHECKS = ("manifest", "exists", "size", "sha256", "decrypt", "decompress", "pg_verifybackup", "start", "smoke checks")


def find_base(storage: Storage, backup_id: str | None) -> Manifest:
    """The named base backup, or the newest; its manifest must exist and be readable."""
    if backup_id is None:
        bases = list_backups(storage, ("base",)).backups
        if not bases:
            raise CheckFailed("manifest", f"no base backup in {storage.url}: nothing to verify")
        return bases[-1]
    try:
        return read_manifest(storage, "base", backup_id)
    except NotFoundError:
        where = storage.describe(manifest_key("base", backup_id))
        raise CheckFailed("manifest", f"base backup {backup_id}: no manifest at {where}") from None
    except BackupError as exc:
        raise CheckFailed("manifest", str(exc)) from None


def make_reachable(folder: Path, scratch_root: Path) -> None:
    """Run as root, the scratch server runs as `postgres`, which must pass through every folder above its data.
    Our own folders (the scratch root and STATE_DIR above it) are opened for passing only, never for listing;
    every run folder stays private. Any other closed folder is a setting to change, said before any download."""
    user = pitr.server_user()
    if user is None:
        return
    for above in [folder, *folder.parents]:
        mode = above.stat()
        if mode.st_mode & stat.S_IXOTH or mode.st_uid == user.pw_uid:
            continue
        if above in (scratch_root, scratch_root.parent):
            os.chmod(above, stat.S_IMODE(mode.st_mode) | 0o711)
        elif above != folder:
            raise ConfigError(
                f"the postgres user cannot reach {folder}: {above} is closed to it; set SPPG_BACKUP_STATE_DIR to "
                "a folder whose parents others may pass through (chmod o+x)"
            )


def verify_files(data: Path, bin_dir: Path) -> None:
    """pg_verifybackup: every file against the backup_manifest pg_basebackup wrote, and the WAL it needs parsed."""
    done = subprocess.run(
        [str(bin_dir / "pg_verifybackup"), "--quiet", str(data)], capture_output=True, text=True, timeout=3600
    )
    if done.returncode != 0:
        said = [line.split("error: ", 1)[-1] for line in done.stderr.strip().splitlines()]
        more = f" (and {len(said) - 1} more)" if len(said) > 1 else ""
        raise CheckFailed("pg_verifybackup", f"pg_verifybackup: {said[0] if said else 'failed'}{more}")


def start_plain(data: Path, port: int, bin_dir: Path, timeout: float) -> None:
    """Start the unpacked backup as it is (crash recovery from the WAL inside it), on loopback only."""
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write(
            f"\n# scratch server of sppg-backup\nport = {port}\nlisten_addresses = '127.0.0.1'\narchive_mode = 'off'\n"
        )
    for stale in ("postmaster.pid", "standby.signal", "recovery.signal"):
        (data / stale).unlink(missing_ok=True)
    try:
        pitr.start(data, data, bin_dir, timeout)
    except CheckFailed as exc:
        raise CheckFailed("start", str(exc)) from None
