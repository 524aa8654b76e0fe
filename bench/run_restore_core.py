"""One restore through the core, no Prefect: download, sha256, decrypt, decompress and pg_restore -j at once,
row counts, swap."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sppg_backup.db import (
    recovery,
    restore,
)
from sppg_backup.settings import load_settings
from sppg_backup.storage import open_storage
from sppg_backup.stream import crypto

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
    restore.fetch_and_restore(
        storage,
        manifest,
        crypto.load_identities(settings.age_identity_file),
        archive,
        lambda grown: recovery.restore_replacing(
            target, archive, manifest, pg_restore, settings.restore_jobs, keep_old=False, grown=grown
        ),
    )
