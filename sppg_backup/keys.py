"""Every id and object key in storage, built here and nowhere else (a prefix rebuilt in two modules drifts).

db/erp_sppg_backup_<UTC>.dump.zst.age, db/<id>.manifest.json      a database backup
<kind>/erp_sppg_<kind>_<UTC>.manifest.json                         a file or config snapshot
<kind>/blobs/..., <kind>/indexes/..., <kind>/running/<id>          its contents, indexes, leases
full/erp_sppg_full_<UTC>.manifest.json, full/<id>/<part>           a full-system set
<manifest stem>.reserved                                           an id claimed while it is made
audit/YYYY/MM/DD/..., health/state.json, drills/<id>.json        the audit trail, alert state, drill reports
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

MANIFEST_SUFFIX = ".manifest.json"
CLAIM_SUFFIX = ".reserved"
EXTENSIONS = {"zstd": "zst", "gzip": "gz"}
BACKUP_PREFIX = "erp_sppg_backup_"
FULL_PREFIX = "erp_sppg_full_"
BASE_PREFIX = "erp_sppg_base_"
HEALTH_STATE = "health/state.json"
DRILLS = "drills/"


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")


def stem(key: str) -> str:
    """db/erp_sppg_backup_X.dump.zst.age -> db/erp_sppg_backup_X (ids hold no dots)."""
    return key.split(".", 1)[0]


def claim(manifest: str) -> str:
    """db/erp_sppg_backup_X.manifest.json -> db/erp_sppg_backup_X.reserved."""
    return stem(manifest) + CLAIM_SUFFIX


# --- database backups ---


def backup_id(now: datetime) -> str:
    return BACKUP_PREFIX + _stamp(now)


def backup_data(kind: str, backup: str, compression: str, encrypted: bool) -> str:
    return f"{kind}/{backup}.dump.{EXTENSIONS[compression]}" + (".age" if encrypted else "")


def manifest(kind: str, item: str) -> str:
    """The manifest of a backup (kind db) or a snapshot (kind files, config)."""
    return f"{kind}/{item}{MANIFEST_SUFFIX}"


def base_id(now: datetime) -> str:
    return BASE_PREFIX + _stamp(now)


def base_data(backup: str, compression: str, encrypted: bool) -> str:
    """A base backup: pg_basebackup's tar, compressed, encrypted."""
    return f"base/{backup}.tar.{EXTENSIONS[compression]}" + (".age" if encrypted else "")


# --- the WAL archive ---

WAL = "wal/"


def wal_object(name: str, sha256: str, encrypted: bool) -> str:
    """A WAL file (segment, timeline history, backup history) under its name and the sha256 of its content."""
    return f"{WAL}{name}.{sha256}.zst" + (".age" if encrypted else "")


def wal_partial(name: str, encrypted: bool) -> str:
    """The segment the receiver is still writing, replaced at every upload until the whole one is pushed."""
    return f"{WAL}{name}.partial.zst" + (".age" if encrypted else "")


def wal_prefix(name: str) -> str:
    return f"{WAL}{name}."


def wal_parts(key: str) -> tuple[str, str]:
    """wal/NAME.SHA256.zst[.age] -> (NAME, SHA256)."""
    name, sha256 = key.removeprefix(WAL).split(".zst", 1)[0].rsplit(".", 1)
    return name, sha256


# --- snapshots of files and configuration ---


def snapshot_prefix(kind: str) -> str:
    return f"{kind}/erp_sppg_{kind}_"


def snapshot_id(kind: str, now: datetime) -> str:
    return f"erp_sppg_{kind}_" + _stamp(now)


def blobs(kind: str) -> str:
    return f"{kind}/blobs"


def indexes(kind: str) -> str:
    return f"{kind}/indexes"


def leases(kind: str) -> str:
    return f"{kind}/running/"


def lease(kind: str, snap: str) -> str:
    return leases(kind) + snap


# --- full-system sets ---


def full_id(now: datetime) -> str:
    return FULL_PREFIX + _stamp(now)


def full_manifest(set_id: str) -> str:
    return f"full/{set_id}{MANIFEST_SUFFIX}"


def full_parts(set_id: str) -> str:
    return f"full/{set_id}/"


def full_part(set_id: str, name: str, encrypted: bool) -> str:
    """full/<set>/<readable name>-<hash of the name>.tar.zst.age: two names never share a key."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    tag = hashlib.sha256(name.encode()).hexdigest()[:8]
    return full_parts(set_id) + f"{safe}-{tag}.tar.zst" + (".age" if encrypted else "")


# --- bookkeeping ---


def audit_record(now: datetime, action: str) -> str:
    return f"audit/{now:%Y/%m/%d/%H%M%S%f}-{action}-{uuid.uuid4().hex[:6]}.json"


def drill_report(report: str) -> str:
    return f"{DRILLS}{report}.json"


CLAIMED = (
    "db/" + BACKUP_PREFIX,
    "base/" + BASE_PREFIX,
    "full/" + FULL_PREFIX,
    snapshot_prefix("files"),
    snapshot_prefix("config"),
)
