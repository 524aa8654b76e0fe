"""The sppg-backup command, the edge of the project: each command runs one flow (or reads the catalog) and prints
its result. Arrows run one way: cli -> flows -> tasks -> core."""

from __future__ import annotations

import logging
import sys

from sppg_backup.cli import cloudsql, db, deploy, files, full, listing, ops, physical, recover, runs  # noqa: F401  (each registers its commands)
from sppg_backup.cli.common import app


def main() -> None:
    # Our own warnings (retries, skipped notifications) on the terminal; Prefect's go to its API (and with -v here).
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    ours = logging.getLogger("sppg_backup")
    ours.addHandler(handler)
    ours.setLevel(logging.WARNING)
    ours.propagate = False
    runs.guarded(runs.stop_orphaned_servers)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
