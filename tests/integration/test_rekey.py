"""Key rotation on real storage with real age keys: backups of several kinds (a dump with its local copy, file
and config snapshots, WAL) made with key A on the storage and a replica, rotated to key B (killed with kill -9
half-way and run again), then restored with B alone; A decrypts nothing anywhere."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyrage
import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.storage.base import file_sha256
from sppg_backup.storage.local import LocalStorage
from sppg_backup.stream.crypto import generate_key_file, load_identities
from tests.helpers import cli, error_lines

pytestmark = pytest.mark.integration


@pytest.fixture
def made_with_a(
    backup_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> dict[str, Any]:
    uploads = tmp_path / "uploads"
    for n in range(150):  # many objects: the kill below lands half-way
        (uploads / f"{n % 7}").mkdir(parents=True, exist_ok=True)
        (uploads / f"{n % 7}" / f"faktur-{n}.pdf").write_bytes(os.urandom(2000 + n))
    config = tmp_path / "app" / ".env"
    config.parent.mkdir()
    config.write_text("JWT_SECRET=rahasia\n")
    segment = tmp_path / "pg_wal" / "000000010000000000000007"
    segment.parent.mkdir()
    segment.write_bytes(os.urandom(1 << 20))
    replica = tmp_path / "dr"
    for name, value in {
        "UPLOADS_DIR": str(uploads),
        "CONFIG_PATHS": str(config),
        "APP_DIR": str(config.parent),
        "REPLICA_URLS": replica.as_uri(),
    }.items():
        monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    for command in (("backup", "db"), ("backup", "files"), ("backup", "config"), ("wal", "push", str(segment))):
        done = cli(*command, api=prefect_api)
        assert done.returncode == 0, done.stderr
    assert cli("replicate", api=prefect_api).returncode == 0
    key_b = tmp_path / "key-b.txt"
    return {"uploads": uploads, "segment": segment, "replica": replica, "key_b": key_b, "b": generate_key_file(key_b)}


def places(env: dict[str, str], made: dict[str, Any]) -> list[Path]:
    return [Path(env["STORAGE_URL"].removeprefix("file://")), Path(env["LOCAL_DIR"]), made["replica"]]


def readable_with(identity_file: Path, roots: list[Path]) -> tuple[list[str], list[str]]:
    """The encrypted objects under `roots` the key opens, and the ones it cannot."""
    identities = load_identities(identity_file)
    opened, refused = [], []
    for root in roots:
        for path in sorted(root.rglob("*.age")):
            if "rekey" in path.parts:
                continue
            try:
                pyrage.decrypt_io(io.BytesIO(path.read_bytes()), io.BytesIO(), identities)
                opened.append(str(path))
            except pyrage.DecryptError:
                refused.append(str(path))
    return opened, refused


def rekey_cli(api: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PREFECT_API_URL": api}
    return subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "rekey", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_rotated_to_b_after_a_kill_everything_restores_with_b_and_a_reads_nothing(
    made_with_a: dict[str, Any], backup_env: dict[str, str], prefect_api: str, age_key: tuple[Path, str], tmp_path: Path
) -> None:
    b = made_with_a["b"]
    roots = places(backup_env, made_with_a)
    before, _ = readable_with(age_key[0], roots)
    assert len(before) > 300  # 150 blobs and more, on the storage and the replica; the dump in the local copy too

    refused = cli("rekey", "--recipients", b, api=prefect_api)
    assert refused.returncode == 2 and "--yes" in error_lines(refused.stderr)[0]
    same_key = cli("rekey", "--recipients", age_key[1], "--yes", api=prefect_api)
    assert same_key.returncode == 2 and "old key" in error_lines(same_key.stderr)[0]
    planned = json.loads(cli("rekey", "--recipients", b, "--dry-run", "--json", api=prefect_api).stdout)
    assert sum(len(p["rewritten"]) for p in planned["storages"]) == len(before)
    assert readable_with(age_key[0], roots)[0] == before  # a dry run changes nothing

    # Killed half-way: whatever it did is whole, under A or under B.
    trail = Path(backup_env["AUDIT_LOG"])
    lines_before = len(trail.read_text().splitlines())
    running = rekey_cli(prefect_api, "--recipients", b, "--yes")
    deadline = time.monotonic() + 120
    while sum('"rekey"' in line for line in trail.read_text().splitlines()[lines_before:]) < 20:
        assert running.poll() is None and time.monotonic() < deadline, running.stderr.read() if running.stderr else ""
        time.sleep(0.005)
    running.send_signal(signal.SIGKILL)
    running.wait()
    with_a, not_a = readable_with(age_key[0], roots)
    assert with_a and not_a, "the kill did not land half-way"
    assert set(readable_with(made_with_a["key_b"], roots)[0]) == set(not_a)  # every object whole, under one key

    done = cli(
        "rekey", "--recipients", b, "--yes", "--verify-identity", str(made_with_a["key_b"]), "--json", api=prefect_api
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verified"] and all(not p["failed"] for p in result["storages"]), result
    assert sum(len(p["already"]) for p in result["storages"]) >= len(not_a)  # went on where it stopped
    assert readable_with(age_key[0], roots)[0] == []  # the old key reads nothing, anywhere
    assert [p for root in roots for p in (root / "rekey").rglob("*") if p.is_file()] == []  # nothing on its way

    # With B alone, every kind comes back.
    b_only = {"SPPG_BACKUP_AGE_IDENTITY_FILE": str(made_with_a["key_b"]), "SPPG_BACKUP_AGE_RECIPIENTS": b}
    for storage in roots[:2]:
        [manifest] = list_backups(LocalStorage(storage)).backups
        assert manifest.recipients == [b]
        assert (
            file_sha256(storage / manifest.data_key) == manifest.sha256
            and manifest.size == (storage / manifest.data_key).stat().st_size
        )
    verified = cli("verify", api=prefect_api, env=b_only)  # a real test restore of the dump
    assert verified.returncode == 0, verified.stderr
    target = tmp_path / "restored-files"
    restored = cli("restore", "files", "--target", str(target), api=prefect_api, env=b_only)
    assert restored.returncode == 0, restored.stderr
    for path in made_with_a["uploads"].rglob("*.pdf"):
        assert (target / path.relative_to(made_with_a["uploads"])).read_bytes() == path.read_bytes()
    fetched = tmp_path / "fetched-segment"
    got = cli("wal", "fetch", made_with_a["segment"].name, str(fetched), api=prefect_api, env=b_only)
    assert got.returncode == 0, got.stderr
    assert fetched.read_bytes() == made_with_a["segment"].read_bytes()
    from_replica = cli(
        "--storage",
        made_with_a["replica"].as_uri(),
        "verify",
        api=prefect_api,
        env={**b_only, "SPPG_BACKUP_LOCAL_DIR": ""},
    )
    assert from_replica.returncode == 0, from_replica.stderr
