"""Retention of base backups and the WAL archive: base backups go like dumps (never the newest), the WAL goes
back to the first segment the oldest kept base backup needs and no further, every deletion audited; what stays
still restores to any second after the oldest kept base backup."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from sppg_backup.db.catalog import list_backups, read_manifest, write_manifest
from sppg_backup.ops import audit
from sppg_backup.physical import pitr, wal
from sppg_backup.sandbox.clusters import Cluster, default_bin_dir
from sppg_backup.storage.local import LocalStorage
from tests.helpers import cli
from tests.integration.test_wal_archive import archiving, push_spool, switch_and_wait

pytestmark = pytest.mark.integration
__all__ = ["archiving"]


def aged(storage: LocalStorage, backup_id: str, days: int) -> None:
    """Back-date a base backup as if it was taken `days` ago (retention reads created_at)."""
    manifest = read_manifest(storage, "base", backup_id)
    write_manifest(storage, manifest.model_copy(update={"created_at": datetime.now(UTC) - timedelta(days=days)}))


def test_prune_keeps_the_wal_every_kept_base_backup_needs_and_it_still_restores(
    archiving: tuple[Cluster, Path], backup_env: dict[str, str], prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, spool = archiving
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", cluster.url("erp_sppg"))
    monkeypatch.setenv(
        "SPPG_BACKUP_DRILL_CHECKS",
        json.dumps([{"name": "ledger", "sql": "SELECT count(*) > 0 FROM ledger", "expect": "true"}]),
    )
    storage = LocalStorage(Path(backup_env["STORAGE_URL"].removeprefix("file://")))
    local = LocalStorage(Path(backup_env["LOCAL_DIR"]))

    def write(note: str) -> None:
        with psycopg.connect(cluster.url("erp_sppg"), autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS ledger (note text)")
            conn.execute("INSERT INTO ledger VALUES (%s)", [note])
        switch_and_wait(cluster, spool)

    def base() -> str:
        done = cli("backup", "base", "--json", api=prefect_api)
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["id"])

    write("a")
    old = base()
    write("b")
    kept = base()
    write("c")
    time.sleep(1.1)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    time.sleep(1.1)
    write("d")
    newest = base()
    switch_and_wait(cluster, spool)
    push_spool(spool, prefect_api)
    for where in (storage, local):
        aged(where, old, 400)
        aged(where, kept, 100)
    start = read_manifest(storage, "base", kept).physical.start_wal  # type: ignore[union-attr]
    before = {a.name for a in wal.archived(storage)}
    needless = {name for name in before if not name.endswith(".history") and name[8:24] < start[8:]}
    assert needless and before - needless  # the archive holds both

    dry = cli("prune", "--dry-run", api=prefect_api)
    assert dry.returncode == 0, dry.stderr
    assert "WAL files: would delete" in dry.stdout and {a.name for a in wal.archived(storage)} == before

    done = cli("prune", "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert {m.id for m in list_backups(storage, ("base",)).backups} == {kept, newest}  # cloud: 365 days
    assert {m.id for m in list_backups(local, ("base",)).backups} == {newest}  # local: 30 days
    assert {a.name for a in wal.archived(storage)} == before - needless
    [wal_result] = [r for r in json.loads(done.stdout) if r["kind"] == "wal"]
    assert set(wal_result["deleted"]) == needless
    records = [r for r in audit.read(Path(backup_env["AUDIT_LOG"])) if r["action"] == "prune.wal"]
    assert [r["result"] for r in records] == ["started", "deleted"]
    assert set(records[0]["details"]["names"]) == needless  # named before anything went

    # The second after "c", from the oldest kept base backup and the WAL that stayed.
    folder = Path(tempfile.mkdtemp(prefix="sppg-pitr-kept-"))
    restored = cli("restore", "pitr", "--to", target.isoformat(), "--target-dir", str(folder), "--json",
                   api=prefect_api)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    result = json.loads(restored.stdout)
    try:
        url = result["url"].replace("postgresql://postgres@", f"postgresql://postgres:{cluster.password}@")
        with psycopg.connect(url) as conn:
            assert [r[0] for r in conn.execute("SELECT note FROM ledger ORDER BY note")] == ["a", "b", "c"]
        assert result["base_backup_id"] == kept
    finally:
        pitr.stop(folder / "data", default_bin_dir())
