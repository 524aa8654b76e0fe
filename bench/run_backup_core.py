"""One backup through the core (dump, compress, encrypt, hash, both copies, check, manifest), no Prefect."""

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sppg_backup import backup  # noqa: E402
from sppg_backup.settings import load_settings  # noqa: E402

settings = load_settings()
dest = backup.open_destinations(settings)
manifest = backup.dump(settings, dest, backup.reserve_id(dest.storage, datetime.now(UTC)))
backup.check_copies(dest, manifest)
backup.publish(dest, manifest)
print(f"  {manifest.id}: {manifest.size / 1e6:.0f} MB in {manifest.duration_seconds:.1f} s", file=sys.stderr)
