"""One `restore pitr --latest` through the core (choose, stream and unpack, WAL, gap check, recovery, promotion),
no Prefect. Usage: run_pitr_core.py TARGET_DIR"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sppg_backup.physical import feed, gaps, pitr
from sppg_backup.sandbox.clusters import default_bin_dir
from sppg_backup.settings import load_settings
from sppg_backup.storage import destinations
from sppg_backup.stream.crypto import identities_from

settings = load_settings()
storage = destinations.open_destinations(settings).storage
target, port = Path(sys.argv[1]), pitr.free_port()
pitr.check_target(target, port)
manifest = pitr.choose(storage, None, settings.zone)
assert manifest.physical is not None
identities = identities_from(settings.age_identity_file)
target.mkdir(parents=True, exist_ok=True)
began = time.monotonic()


def lap(what: str) -> None:
    global began
    print(f"  {what}: {time.monotonic() - began:.1f} s", file=sys.stderr)
    began = time.monotonic()


pitr.unpack_base(storage, manifest, identities, target / "data")
lap("stream and unpack the base backup")
plan = pitr.plan_wal(storage, manifest, identities, target / "data", target / "wal", True)
bin_dir = default_bin_dir()
stored = set(plan.segments)
start_wal, zone = manifest.physical.start_wal, settings.zone
gaps.check_wal(target / "data", target / "wal", start_wal, None, bin_dir, storage.url, zone, stored)
lap(f"list WAL ({len(plan.segments)} segments), gap check")
pitr.configure(target / "data", target / "wal", None, port)
with feed.Feed(storage, plan.segments, identities, target / "wal", pitr.server_user()) as feeding:
    pitr.start(target / "data", target / "wal", bin_dir, 3600, feeding.check)
lap("recovery (WAL fetched as it replays) and promotion")
print(f"  recovered {manifest.id} on port {port}", file=sys.stderr)
