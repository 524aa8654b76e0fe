"""What a run must have to itself: the names of the Prefect global concurrency limits (limit 1) that keep two runs
off one database, one backup catalog or one file-snapshot catalog at once (taken in tasks/limits.py)."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from sppg_backup.db.postgres import parse
from sppg_backup.settings import Settings

Kind = Literal["database", "files"]
DATABASE: Kind = "database"  # the ERP database and its backup catalog: backup, verify, drill, restore, prune
FILES: Kind = "files"  # the uploads and configuration snapshots: snapshot, restore, prune (blobs are shared)
PREFIX = "sppg-backup:"
# Every Prefect server these limits live on keeps its leases in files (under PREFECT_HOME): the default keeps them in
# memory, so each command's temporary server would see only its own and a restarted server would hold a dead run's
# slot for good.
LEASES_IN_FILES = ("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect.server.concurrency.lease_storage.filesystem")
# How the server's automation (automations.yaml) begins the message of a run it marked Crashed: such a run may only
# have been cut off from the server, so its slot goes when its lease runs out, not at once.
CRASHED_BY_AUTOMATION = "No heartbeat for"
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_.@:+-]+")  # Prefect bans / % & > <; a name is also a URL path segment


def _clean(text: str) -> str:
    return _NOT_IN_NAMES.sub(":", text).strip(":")


def storage_label(url: str) -> str:
    """A storage URL as a limit name part: gs://bucket/prefix -> gs:bucket:prefix (no credentials are in it)."""
    scheme, _, rest = url.partition("://")
    return _clean(f"{scheme}:{rest.strip('/')}")


def names(settings: Settings, kinds: tuple[Kind, ...], database_url: str | None = None) -> list[str]:
    """The limits a run of these kinds takes (on `database_url`, default DATABASE_URL), in a stable order: one
    request takes them all or none."""
    found = []
    if DATABASE in kinds:
        target = parse(database_url or settings.database_url)[0]
        # an instance's own: two instances on two hosts may both name localhost:5432
        where = f"{_clean(settings.instance)}:" if settings.instance else ""
        found.append(f"{PREFIX}database:{where}{_clean(target.database)}@{_clean(target.host)}:{target.port}")
        found.append(f"{PREFIX}backups:{storage_label(settings.storage_url)}")
    if FILES in kinds:
        found.append(f"{PREFIX}files:{storage_label(settings.storage_url)}")
    return sorted(found)


def holder_variable(name: str) -> str:
    """The Prefect variable that says which run holds limit `name` (variable names allow a-z 0-9 _ -)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.removeprefix(PREFIX).lower()).strip("-")[:180]
    return f"sppg-holder-{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"  # two names never share one
