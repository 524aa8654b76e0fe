"""One restore through the core, no Prefect: download, sha256, decrypt, decompress and pg_restore -j at once,
row counts, swap."""

import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sppg_backup.db import (
    recovery,
    restore,
)
from sppg_backup.db.catalog import Manifest
from sppg_backup.settings import load_settings
from sppg_backup.storage import Storage, open_storage
from sppg_backup.stream import crypto
from sppg_backup.stream.growing import GrowingFile

T = TypeVar("T")


def fetch_and_restore(
    storage: Storage, manifest: Manifest, identities: list[Any], archive: Path, restore_into: Callable[[GrowingFile], T]
) -> T:
    """Download into `archive` in a thread while `restore_into` restores from it as it grows."""
    grown = GrowingFile(archive)

    def fetch() -> None:
        try:
            restore.fetch_dump(storage, manifest, identities, archive, grown)
        except BaseException as exc:  # the reader gets the error through `grown`
            grown.fail(exc)
            archive.unlink(missing_ok=True)

    thread = threading.Thread(target=fetch, name="fetch", daemon=True)
    thread.start()
    try:
        return restore_into(grown)
    finally:
        thread.join()


settings = load_settings()
target = sys.argv[1]
storage = open_storage(settings.storage_url)
manifest = recovery.choose_backup(storage)
assert settings.age_identity_file is not None
if settings.scratch_dir:
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
pg_restore = restore.pg_restore_tool(settings.database_url, settings.pg_bin_dir)
with tempfile.TemporaryDirectory(dir=settings.scratch_dir) as scratch:
    archive = Path(scratch) / "archive.dump"
    fetch_and_restore(
        storage,
        manifest,
        crypto.load_identities(settings.age_identity_file),
        archive,
        lambda grown: recovery.restore_replacing(
            target, archive, manifest, pg_restore, settings.restore_jobs, keep_old=False, grown=grown
        ),
    )
