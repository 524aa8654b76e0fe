"""The WAL archive: `wal push` (archive_command) and `wal fetch` (restore_command) with the exit codes PostgreSQL
expects, and a database brought back from storage alone to the second between two transactions."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sppg_backup.physical import wal
from sppg_backup.sandbox.clusters import Cluster
from sppg_backup.storage.base import file_sha256
from sppg_backup.storage.local import LocalStorage
from tests.helpers import cli, error_lines, unpack_base

pytestmark = pytest.mark.integration


def owned_by_postgres(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


@pytest.fixture(scope="module")
def archiving() -> Iterator[tuple[Cluster, Path]]:
    """A server whose archive_command copies each finished WAL file into a spool (the postgres user cannot run
    this checkout's Python); the tests push the spool with `sppg-backup wal push`, as archive_command would."""
    cluster = Cluster().start()
    spool = owned_by_postgres(Path(tempfile.mkdtemp(prefix="sppg-spool-")))
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET archive_mode = 'on'")
        conn.execute(f"ALTER SYSTEM SET archive_command = 'cp %p {spool}/%f'")
    cluster.stop(remove=False)
    cluster.start()
    cluster.create_database("erp_sppg")
    yield cluster, spool
    cluster.stop()
    shutil.rmtree(spool, ignore_errors=True)


def switch_and_wait(cluster: Cluster, spool: Path) -> str:
    """End the current WAL segment and wait until the server archived it; its name."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        name = conn.execute("SELECT pg_walfile_name(%s)", [lsn]).fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT pg_switch_wal()")
    for _ in range(100):
        if (spool / name).exists():
            return str(name)
        time.sleep(0.1)
    raise AssertionError(f"{name} was not archived")


def push_spool(spool: Path, api: str) -> None:
    for path in sorted(spool.iterdir()):
        done = cli("wal", "push", str(path), api=api)
        assert done.returncode == 0, done.stderr


def test_push_is_once_per_content_and_fetch_exits_as_postgres_expects(
    archiving: tuple[Cluster, Path], backup_env: dict[str, str], prefect_api: str, tmp_path: Path
) -> None:
    cluster, spool = archiving
    with psycopg.connect(cluster.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (v text)")
        conn.execute("INSERT INTO t VALUES ('x')")
    name = switch_and_wait(cluster, spool)
    segment = spool / name
    assert cli("wal", "push", str(segment), api=prefect_api).returncode == 0
    storage = LocalStorage(Path(backup_env["STORAGE_URL"].removeprefix("file://")))
    [stored] = wal.find(storage, name)
    assert stored.key.endswith(".zst.age") and stored.sha256 == file_sha256(segment)
    again = cli("wal", "push", str(segment), api=prefect_api)
    assert again.returncode == 0 and again.stderr == ""  # the same content: already done

    other = tmp_path / "other" / name
    other.parent.mkdir()
    other.write_bytes(b"\x01" + segment.read_bytes()[1:])
    refused = cli("wal", "push", str(other), api=prefect_api)
    assert refused.returncode == 1
    [line] = error_lines(refused.stderr)
    assert f"WAL {name} is already archived with other content" in line
    assert [c.sha256 for c in wal.find(storage, name)] == [stored.sha256]  # the archived one stays

    fetched = tmp_path / "fetched"
    assert cli("wal", "fetch", name, str(fetched), api=prefect_api).returncode == 0
    assert fetched.read_bytes() == segment.read_bytes()
    missing = cli("wal", "fetch", "0000000100000000000000FF", str(tmp_path / "none"), api=prefect_api)
    assert (missing.returncode, missing.stderr) == (1, "") and not (tmp_path / "none").exists()
    hostile = cli("wal", "fetch", "../../etc/passwd", str(tmp_path / "x"), api=prefect_api)
    assert hostile.returncode == 200 and "is not a WAL file name" in error_lines(hostile.stderr)[0]

    data = storage.folder / stored.key  # type: ignore[operator]
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data.write_bytes(bytes(damaged))
    broken = cli("wal", "fetch", name, str(tmp_path / "broken"), api=prefect_api)
    assert broken.returncode == 200  # above 125: PostgreSQL stops the recovery instead of ending it short
    [line] = error_lines(broken.stderr)
    assert name in line and not (tmp_path / "broken").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-fetched file left


def test_a_database_comes_back_from_storage_to_the_second_between_two_transactions(
    archiving: tuple[Cluster, Path], backup_env: dict[str, str], prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, spool = archiving
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", cluster.url("erp_sppg"))
    with psycopg.connect(cluster.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, note text)")
    done = cli("backup", "base", "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    with psycopg.connect(cluster.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("INSERT INTO invoices VALUES (1, 'before the mistake')")
        time.sleep(1.2)
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        time.sleep(1.2)
        conn.execute("DELETE FROM invoices")  # the mistake
    switch_and_wait(cluster, spool)
    push_spool(spool, prefect_api)

    # A fresh host: the base backup and the WAL from storage, nothing from the server.
    storage = LocalStorage(Path(backup_env["STORAGE_URL"].removeprefix("file://")))
    base = Path(tempfile.mkdtemp(prefix="sppg-pitr-"))
    stored = storage.folder / manifest["data_key"]  # type: ignore[operator]
    unpack_base(stored, Path(backup_env["AGE_IDENTITY_FILE"]), base, cluster.password)
    fetched = owned_by_postgres(base / "wal")
    for archived in wal.archived(storage):
        done = cli("wal", "fetch", archived.name, str(fetched / archived.name), api=prefect_api)
        assert done.returncode == 0, done.stderr
    owned_by_postgres(fetched)
    for path in fetched.iterdir():
        shutil.chown(path, "postgres", "postgres") if os.geteuid() == 0 else None
    with open(base / "data" / "postgresql.auto.conf", "a") as conf:
        conf.write(
            f"restore_command = 'cp {fetched}/%f %p'\nrecovery_target_time = '{target.isoformat()}'\n"
            "recovery_target_action = 'promote'\narchive_mode = 'off'\n"
        )
    (base / "data" / "recovery.signal").touch()
    if os.geteuid() == 0:
        shutil.chown(base / "data" / "recovery.signal", "postgres", "postgres")
    restored = Cluster(base).start()
    try:
        with psycopg.connect(restored.url("erp_sppg"), autocommit=True) as conn:
            for _ in range(100):
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    break
                time.sleep(0.1)
            rows = conn.execute("SELECT id, note FROM invoices").fetchall()
        assert rows == [(1, "before the mistake")]
    finally:
        restored.stop()
