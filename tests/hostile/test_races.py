"""Backups started at the same second: every one gets its own id and is listed; none deletes another's."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sppg_backup.db import catalog, dump
from sppg_backup.db.catalog import list_backups
from sppg_backup.files import snapshots
from sppg_backup.full import system
from sppg_backup.settings import Settings
from sppg_backup.storage import destinations, open_storage

pytestmark = pytest.mark.integration


def test_concurrent_backups_each_get_an_id_and_all_are_listed(backup_env: dict[str, str], prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "sppg_backup", "backup", "db", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, [err for _, err in outputs]
    listed = list_backups(open_storage(backup_env["STORAGE_URL"]))
    assert len({m.id for m in listed.backups}) == 4 and listed.orphans == []
    for manifest in listed.backups:  # each listed backup's data is its own, whole
        stored = open_storage(backup_env["STORAGE_URL"]).stat(manifest.data_key)
        assert (stored.size, stored.sha256) == (manifest.size, manifest.sha256)


def test_a_run_that_loses_the_race_never_deletes_the_winners_backup(backup_env: dict[str, str]) -> None:
    settings = Settings()
    dest = destinations.open_destinations(settings)
    now = datetime.now(UTC)
    first, second = dump.reserve_id(dest.storage, now), dump.reserve_id(dest.storage, now)
    assert first != second  # the claim, not the manifest, holds the id while the first is being made
    winner = dump.dump(settings, dest, first)
    catalog.publish(dest, winner)
    loser = dump.dump(settings, dest, second)
    catalog.discard(dest, loser)  # e.g. its copies failed their check
    assert [m.id for m in list_backups(dest.storage).backups] == [first]
    assert list_backups(dest.storage).orphans == []  # no claim is left behind either


def test_every_kind_of_id_is_claimed(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "storage").as_uri())
    now = datetime.now(UTC)
    assert system.reserve_id(storage, now) != system.reserve_id(storage, now)
    assert snapshots.reserve_id(storage, "files", now) != snapshots.reserve_id(storage, "files", now)
