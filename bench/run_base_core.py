"""One base backup through the core (pg_basebackup, compress, encrypt, hash, copies, check, manifest), no Prefect."""

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sppg_backup.db import catalog
from sppg_backup.physical import base
from sppg_backup.settings import load_settings
from sppg_backup.storage import destinations

settings = load_settings()
dest = destinations.open_destinations(settings)
manifest = base.back_up(settings, dest, base.reserve_id(dest.storage, datetime.now(UTC)))
catalog.check_and_publish(dest, manifest)
print(f"  {manifest.id}: {manifest.size / 1e6:.0f} MB in {manifest.duration_seconds:.1f} s", file=sys.stderr)
