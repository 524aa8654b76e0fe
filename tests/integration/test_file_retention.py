"""The guide's lifecycle policy for uploads: 90 days, but the last 5 versions of every file stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.errors import PermanentError
from sppg_backup.files import restore, retention, snapshots
from sppg_backup.ops.audit import AuditTrail
from sppg_backup.storage import open_storage, put_bytes
from sppg_backup.stream import crypto

pytestmark = pytest.mark.integration
INVOICE = "invoice.pdf"


def backdate(storage: Any, snap: snapshots.Snapshot, days: float) -> None:
    """Make a snapshot look `days` old, as if taken then (its manifest is all that dates it)."""
    moment = datetime.now(UTC) - timedelta(days=days)
    older = snap.model_copy(update={"created_at": moment, "finished_at": moment})
    put_bytes(storage, snapshots.manifest_key("files", snap.id), older.model_dump_json().encode())


@pytest.fixture
def versions(tmp_path: Path, age_key: tuple[Path, str]) -> dict[str, Any]:
    """Six snapshots, each with a new version of invoice.pdf; contract.pdf never changes."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "contract.pdf").write_bytes(b"%PDF contract, signed once")
    storage = open_storage((tmp_path / "storage").as_uri())
    taken = []
    for number in range(1, 7):
        (uploads / INVOICE).write_bytes(f"%PDF invoice version {number}".encode())
        snap_id = snapshots.reserve_id(storage, "files", datetime.now(UTC) + timedelta(seconds=number))
        snap = snapshots.take(storage, "files", [snapshots.Source(uploads, "")], [age_key[1]], tmp_path / "s", snap_id)
        assert snap is not None
        taken.append(snap)
    return {
        "storage": storage,
        "snapshots": taken,
        "identities": crypto.load_identities(age_key[0]),
        "audit": AuditTrail(tmp_path / "audit.jsonl", None, {"user": "test"}),
        "tmp": tmp_path,
    }


def prune(v: dict[str, Any]) -> retention.SnapshotPruneResult:
    return retention.prune(
        v["storage"], "files", v["identities"], datetime.now(UTC), 90, 5, v["audit"], grace=timedelta(0)
    )


def invoice_versions(v: dict[str, Any]) -> list[bytes]:
    """Every version of invoice.pdf still restorable, restored one by one."""
    contents = []
    for version in restore.history(v["storage"], "files", v["identities"], INVOICE):
        snap = snapshots.choose(v["storage"], "files", version.first_snapshot)
        target = v["tmp"] / f"restore-{version.first_snapshot}"
        restore.restore(v["storage"], snap, v["identities"], target, prefix=INVOICE)
        contents.append((target / INVOICE).read_bytes())
    return contents


def test_a_sixth_change_drops_the_oldest_version_once_it_is_past_90_days(versions: dict[str, Any]) -> None:
    first = versions["snapshots"][0]
    backdate(versions["storage"], first, 100)
    result = prune(versions)
    assert result.deleted_snapshots == [first.id]
    assert invoice_versions(versions) == [f"%PDF invoice version {n}".encode() for n in range(2, 7)]
    deleted_blob = [key for key in result.deleted_objects if "/blobs/" in key]
    assert len(deleted_blob) == 1  # version 1's content, and nothing else
    newest = versions["snapshots"][-1]
    target = versions["tmp"] / "all"
    restore.restore(versions["storage"], newest, versions["identities"], target)
    assert (target / "contract.pdf").read_bytes() == b"%PDF contract, signed once"  # unchanged file kept
    audit = (versions["tmp"] / "audit.jsonl").read_text()
    assert first.id in audit and audit.count('"started"') == len(result.deleted_objects) + 1


def test_a_version_younger_than_90_days_stays_even_with_five_newer(versions: dict[str, Any]) -> None:
    backdate(versions["storage"], versions["snapshots"][0], 80)
    result = prune(versions)
    assert result.deleted_snapshots == [] and result.deleted_objects == []
    assert len(invoice_versions(versions)) == 6


def test_the_last_five_versions_stay_however_old(versions: dict[str, Any]) -> None:
    """Five versions all past 90 days, one newer: the old snapshots holding the last five stay."""
    for age, snap in zip((200, 150, 120, 110, 100, 95), versions["snapshots"], strict=True):
        backdate(versions["storage"], snap, age)
    result = prune(versions)
    assert result.deleted_snapshots == [versions["snapshots"][0].id]
    assert invoice_versions(versions) == [f"%PDF invoice version {n}".encode() for n in range(2, 7)]


def test_dry_run_deletes_nothing(versions: dict[str, Any]) -> None:
    backdate(versions["storage"], versions["snapshots"][0], 100)
    before = {o.key for o in versions["storage"].list("files/")}
    result = retention.prune(
        versions["storage"],
        "files",
        versions["identities"],
        datetime.now(UTC),
        90,
        5,
        versions["audit"],
        dry_run=True,
        grace=timedelta(0),
    )
    assert result.deleted_snapshots and {o.key for o in versions["storage"].list("files/")} == before


def test_an_unreadable_manifest_stops_prune_before_anything_is_deleted(versions: dict[str, Any]) -> None:
    backdate(versions["storage"], versions["snapshots"][0], 100)
    broken = versions["snapshots"][3]
    put_bytes(versions["storage"], snapshots.manifest_key("files", broken.id), b"{ not json")
    before = {o.key for o in versions["storage"].list("files/")}
    with pytest.raises(PermanentError, match="manifests cannot be read.*nothing was pruned"):
        prune(versions)
    assert {o.key for o in versions["storage"].list("files/")} == before


def test_blobs_of_a_snapshot_being_taken_are_left_alone(versions: dict[str, Any]) -> None:
    """A snapshot still running has uploaded blobs no manifest names yet: prune must not take them."""
    backdate(versions["storage"], versions["snapshots"][0], 100)
    put_bytes(versions["storage"], "files/blobs/aa/" + "a" * 64 + ".zst.age", b"uploaded by a running snapshot")
    put_bytes(versions["storage"], snapshots.lease_key("files", "erp_sppg_files_20991231_000000"), b"")
    result = prune(versions)
    assert result.deleted_snapshots == [versions["snapshots"][0].id] and result.deleted_objects == []
    assert versions["storage"].stat("files/blobs/aa/" + "a" * 64 + ".zst.age").size > 0
