"""`restore pitr` when the archive is not whole, after a timeline switch, and on a fresh host: a WAL segment
missing from storage or damaged there is one line naming it and how far the WAL before it reaches, never a
database that stopped short; a server promoted on timeline 2 that archives into the same storage is followed
from the timeline 1 base backup through the history file; a fresh host with nothing but a config file (the
bucket, the key, the database's login) gets every committed row back from GCS.

One history is made once for the module (the real receiver on a real primary, a real base backup, committed
rows in segments ended with pg_switch_wal) and every test works on its own copy of that storage."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sppg_backup.errors import CheckFailed, NotFoundError
from sppg_backup.physical import feed, pitr, wal
from sppg_backup.sandbox.clusters import Cluster, default_bin_dir, free_port
from sppg_backup.storage.local import LocalStorage
from sppg_backup.stream.crypto import identities_from
from tests.helpers import cli, error_lines
from tests.integration.test_wal_receiver import INTERVAL, base_backup, primary, receiver, wait_connected

pytestmark = pytest.mark.integration
__all__ = ["primary"]  # the receiver tests' module-scoped primary: a server of this module's own


def set_env(mp: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Exactly these SPPG_BACKUP_* settings, nothing left over from elsewhere."""
    for name in list(os.environ):
        if name.startswith("SPPG_BACKUP_"):
            mp.delenv(name)
    for name, value in env.items():
        mp.setenv("SPPG_BACKUP_" + name, value)


def segment(conn: psycopg.Connection[Any]) -> str:
    return str(conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0])  # type: ignore[index]


def now(conn: psycopg.Connection[Any]) -> datetime:
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index,no-any-return]


def stop_receiver(running: Any) -> None:
    running.send_signal(signal.SIGTERM)  # uploads what it has, then exits 0
    assert running.wait(30) == 0


@pytest.fixture(scope="module")
def archive(
    primary: Cluster, prefect_api: str, age_key: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A base backup, then rows 1..8 two to a segment: segments[0] holds rows 1-2 (t[1] between them),
    segments[1] rows 3-4 (t[3]), segments[2] rows 5-6 (t[5]), each ended with pg_switch_wal; rows 7-8 (t[7]) in
    the segment the receiver was writing when it stopped. The WAL came through `sppg-backup wal stream`."""
    root = tmp_path_factory.mktemp("pitr-history")
    env = {
        "DATABASE_URL": primary.url("erp_sppg"),
        "STORAGE_URL": (root / "storage").as_uri(),
        "LOCAL_DIR": "",
        "AGE_RECIPIENTS": age_key[1],
        "AGE_IDENTITY_FILE": str(age_key[0]),
        "STATE_DIR": str(root / "state"),
        "WAL_DIR": str(root / "spool"),
        "WAL_UPLOAD_INTERVAL_SECONDS": str(INTERVAL),
        "REPLICATION_SLOT": f"failures_{os.getpid()}",
        "MIN_BACKUP_SIZE": "10000",
        "RETRIES": "1",
        "RETRY_DELAY_SECONDS": "0",
        "SCHEDULED_FLOWS": "",
    }
    with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY)")  # the default DRILL_CHECKS: users exist
        conn.execute("INSERT INTO users VALUES (1)")
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text)")
    with pytest.MonkeyPatch.context() as mp:
        set_env(mp, env)
        running = receiver(prefect_api)
        try:
            wait_connected(env, primary)
            base_id = base_backup(prefect_api)
            segments, t = [], {}
            with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
                for first in (1, 3, 5, 7):
                    conn.execute("INSERT INTO ledger VALUES (%s, 'timeline 1')", [first])
                    t[first] = now(conn)
                    conn.execute("INSERT INTO ledger VALUES (%s, 'timeline 1')", [first + 1])
                    segments.append(segment(conn))
                    if first < 7:
                        conn.execute("SELECT pg_switch_wal()")
            assert len(set(segments)) == 4
            time.sleep(2 * INTERVAL)
        finally:
            stop_receiver(running)
    storage = LocalStorage(root / "storage")
    assert {a.name for a in wal.archived(storage)} >= set(segments[:3])
    assert [p.name for p in wal.partials(storage)] == segments[3:]
    return {"env": env, "storage": root / "storage", "base_id": base_id, "segments": segments, "t": t}


@pytest.fixture
def restoring(archive: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """This test's own copy of the module's storage, and the settings a restore from it reads."""
    shutil.copytree(archive["storage"], tmp_path / "storage")
    env = {
        "DATABASE_URL": archive["env"]["DATABASE_URL"],
        "STORAGE_URL": (tmp_path / "storage").as_uri(),
        "AGE_IDENTITY_FILE": archive["env"]["AGE_IDENTITY_FILE"],
        "AGE_RECIPIENTS": archive["env"]["AGE_RECIPIENTS"],
        "LOCAL_DIR": "",
        "STATE_DIR": str(tmp_path / "state"),
        "SCHEDULED_FLOWS": "",
    }
    set_env(monkeypatch, env)
    return {**archive, "copy": tmp_path / "storage"}


@pytest.fixture
def servers() -> Iterator[list[dict[str, Any]]]:
    """Restored servers (restore pitr's JSON) the test started: stopped and removed at its end."""
    started: list[dict[str, Any]] = []
    yield started
    for result in started:
        data = Path(result["data_dir"])
        pitr.stop(data, default_bin_dir())
        shutil.rmtree(data.parent, ignore_errors=True)


def restore(
    api: str, servers: list[dict[str, Any]], *args: str, config: Path | None = None, target: Path | None = None
) -> dict[str, Any]:
    """`sppg-backup restore pitr ARGS --json` that must succeed; its result (the server stopped at the end)."""
    target = target or Path(tempfile.mkdtemp(prefix="sppg-pitr-"))
    options = ["--config", str(config)] if config else []
    done = cli(*options, "restore", "pitr", *args, "--target-dir", str(target), "--json", api=api)
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)  # left empty by the failed run
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, Any] = json.loads(done.stdout)
    servers.append(result)
    return result


def refused(api: str, *args: str, target: Path) -> str:
    """`sppg-backup restore pitr ARGS` that must fail cleanly: exit 1, exactly one error line and no traceback,
    the folder left empty (removed when the run made it), no server left on the port. The error line."""
    port = free_port()
    made = not target.exists()
    done = cli("restore", "pitr", *args, "--target-dir", str(target), "--port", str(port), api=api)
    if done.returncode == 0:  # it handed over a server: stopped, then the test fails
        pitr.stop(target / "data", default_bin_dir())
    assert done.returncode == 1, done.stderr + done.stdout
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    if made:
        assert not target.exists()
    else:
        assert list(target.iterdir()) == []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing listens there
    running = [p for p in Path("/proc").glob("[0-9]*") if str(target).encode() in _cmdline(p)]
    assert running == [], "a server was left running on " + str(target)
    return lines[0]


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def rows_of(result: dict[str, Any], password: str) -> list[Any]:
    url = result["url"].replace("postgresql://postgres@", f"postgresql://postgres:{password}@")
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, note FROM ledger ORDER BY id").fetchall()


def reached(line: str) -> datetime:
    """When the error line says the last transaction before the gap committed (shown in WIB)."""
    found = re.search(r"committed at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) WIB", line)
    assert found, line
    return datetime.fromisoformat(found.group(1) + "+07:00")


def lsn_of(name: str) -> str:
    """Where WAL segment `name` (16 MB segments) starts, as PostgreSQL writes an LSN."""
    number = int(name[8:16], 16) * 256 + int(name[16:24], 16)
    start = number * (16 << 20)
    return f"{start >> 32:X}/{start & 0xFFFFFFFF:X}"


def timeline_1(n: int) -> tuple[int, str]:
    return (n, "timeline 1")


def test_a_missing_segment_is_named_with_how_far_the_wal_before_it_reaches(
    restoring: dict[str, Any], prefect_api: str, primary: Cluster, servers: list[dict[str, Any]]
) -> None:
    missing, t = restoring["segments"][1], restoring["t"]
    [stored] = wal.find(LocalStorage(restoring["copy"]), missing)
    (restoring["copy"] / stored.key).unlink()

    parent = Path(tempfile.mkdtemp(prefix="sppg-gap-"))
    parent.chmod(0o711)  # the server, as `postgres`, passes through it to the folder the run makes
    try:
        line = refused(prefect_api, "--latest", target=parent / "new")  # a folder the run makes: removed
        assert missing in line and "missing" in line and lsn_of(missing) in line, line
        assert t[1].replace(microsecond=0) <= reached(line) < t[3], line  # row 2's commit, the last before it
        line = refused(prefect_api, "--to", t[5].isoformat(), target=parent)  # an empty folder: left empty
        assert missing in line and "missing" in line and lsn_of(missing) in line, line
        assert parent.is_dir()
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    before = restore(prefect_api, servers, "--to", t[1].isoformat())  # the gap is after the target: no matter
    assert rows_of(before, primary.password) == [timeline_1(1)]


def test_a_damaged_segment_is_named_and_a_time_before_it_still_comes_back(
    restoring: dict[str, Any], prefect_api: str, primary: Cluster, servers: list[dict[str, Any]]
) -> None:
    damaged, t = restoring["segments"][2], restoring["t"]
    [stored] = wal.find(LocalStorage(restoring["copy"]), damaged)
    path = restoring["copy"] / stored.key
    content = bytearray(path.read_bytes())
    for at in range(len(content) // 2, len(content) // 2 + 8):
        content[at] ^= 0xFF
    path.write_bytes(bytes(content))

    target = Path(tempfile.mkdtemp(prefix="sppg-damaged-"))
    try:
        line = refused(prefect_api, "--latest", target=target)
        assert damaged in line and "damaged" in line and lsn_of(damaged) in line, line
        assert t[3].replace(microsecond=0) <= reached(line) < t[5], line  # row 4's commit
        line = refused(prefect_api, "--to", t[7].isoformat(), target=target)
        assert damaged in line and "damaged" in line, line
    finally:
        shutil.rmtree(target, ignore_errors=True)
    before = restore(prefect_api, servers, "--to", t[3].isoformat())  # all it needs is before the damage
    assert rows_of(before, primary.password) == [timeline_1(n) for n in (1, 2, 3)]


def test_a_segment_storage_loses_during_the_recovery_aborts_it_instead_of_promoting_short(
    restoring: dict[str, Any], age_key: tuple[Path, str]
) -> None:
    """The WAL arrives while the server replays it: a segment that was listed but cannot be fetched when its
    turn comes (storage lost it, or access was denied) makes the real server abort its recovery; answering
    "no such file" would have promoted a database missing everything after it."""
    storage = LocalStorage(restoring["copy"])
    manifest = pitr.choose(storage, None, "Asia/Jakarta")
    identities = identities_from(age_key[0])
    target = Path(tempfile.mkdtemp(prefix="sppg-lost-"))
    try:
        pitr.unpack_base(storage, manifest, identities, target / "data")
        plan = pitr.plan_wal(storage, manifest, identities, target / "data", target / "wal", latest=True)
        lost = restoring["segments"][2]
        assert lost in plan.segments
        [stored] = wal.find(storage, lost)
        (restoring["copy"] / stored.key).unlink()
        pitr.configure(target / "data", target / "wal", None, free_port())
        feeding = feed.Feed(storage, plan.segments, identities, target / "wal", pitr.server_user())
        with feeding, pytest.raises((NotFoundError, CheckFailed)):
            pitr.start(target / "data", target / "wal", default_bin_dir(), 120, feeding.check)
        with pytest.raises(NotFoundError, match=lost):
            feeding.check()
        deadline = time.monotonic() + 30
        while (target / "data" / "postmaster.pid").exists():  # it stops by itself: the recovery aborted
            assert time.monotonic() < deadline, "the server still runs"
            time.sleep(0.2)
        log = (target / "recovery.log").read_text()
        assert "ready to accept connections" not in log and "selected new timeline" not in log, log
        assert f'could not restore file "{lost}" from archive' in log, log
    finally:
        pitr.stop(target / "data", default_bin_dir())
        shutil.rmtree(target, ignore_errors=True)


def push_finished(pg_wal: Path, timeline: int, last: str, api: str, since: str = "") -> list[str]:
    """`sppg-backup wal push` (archive_command's work) of the finished WAL files of `timeline` in `pg_wal`:
    its history file first, then every segment from `since` to `last` (ended by pg_switch_wal)."""
    prefix = f"{timeline:08X}"
    names = sorted(
        p.name
        for p in pg_wal.iterdir()
        if p.name == prefix + ".history" or (len(p.name) == 24 and since <= p.name <= last)
    )
    names = [n for n in names if n.startswith(prefix)]
    for name in names:
        done = cli("wal", "push", str(pg_wal / name), api=api)
        assert done.returncode == 0, done.stderr
    return names


def test_after_a_timeline_switch_the_restore_follows_the_history_file_to_timeline_2(
    restoring: dict[str, Any], prefect_api: str, primary: Cluster, servers: list[dict[str, Any]]
) -> None:
    promoted = restore(prefect_api, servers, "--latest")  # the disaster: this server is the database from now on
    password = primary.password
    assert rows_of(promoted, password) == [timeline_1(n) for n in range(1, 9)]
    # The old primary goes on for a moment on timeline 1 (a split brain): its WAL is archived too.
    with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("INSERT INTO ledger VALUES (101, 'timeline 1 after the switch')")
        last = segment(conn)
        conn.execute("SELECT pg_switch_wal()")
    assert push_finished(primary.data / "pg_wal", 1, last, prefect_api, since=restoring["segments"][3])
    # The new server writes on timeline 2 and archives into the same storage, history file first.
    url = promoted["url"].replace("postgresql://postgres@", f"postgresql://postgres:{password}@")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT left(pg_walfile_name(pg_current_wal_lsn()), 8)").fetchone() == ("00000002",)
        conn.execute("INSERT INTO ledger VALUES (201, 'timeline 2')")
        to = now(conn)
        conn.execute("INSERT INTO ledger VALUES (202, 'timeline 2, after the target')")
        last = segment(conn)
        conn.execute("SELECT pg_switch_wal()")
    pushed = push_finished(Path(promoted["data_dir"]) / "pg_wal", 2, last, prefect_api)
    assert pushed[0] == "00000002.history" and len(pushed) >= 2

    again = restore(prefect_api, servers, "--to", to.isoformat())
    assert again["base_backup_id"] == restoring["base_id"]  # the timeline 1 base backup, the only one
    assert rows_of(again, password) == [*[timeline_1(n) for n in range(1, 9)], (201, "timeline 2")]
    history = (Path(again["data_dir"]) / "pg_wal" / "00000003.history").read_text()
    assert [line.split("\t")[0] for line in history.splitlines() if line.strip()] == ["1", "2"], history


def test_a_fresh_host_with_only_a_config_file_gets_every_committed_row_from_gcs(
    archive: dict[str, Any],
    primary: Cluster,
    prefect_api: str,
    gcs_bucket_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: list[dict[str, Any]],
) -> None:
    # The database host: the receiver and a base backup into the bucket, then work committed.
    source = {
        **archive["env"],
        "STORAGE_URL": gcs_bucket_url,
        "STATE_DIR": str(tmp_path / "state"),
        "WAL_DIR": str(tmp_path / "spool"),
        "REPLICATION_SLOT": f"gcs_{os.getpid()}",
    }
    set_env(monkeypatch, source)
    running = receiver(prefect_api)
    try:
        wait_connected(source, primary)
        base_backup(prefect_api)
        with psycopg.connect(primary.url("erp_sppg"), autocommit=True) as conn:
            conn.execute("INSERT INTO ledger VALUES (301, 'in a finished segment')")
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("INSERT INTO ledger VALUES (302, 'in the segment being written')")
            committed = conn.execute("SELECT id, note FROM ledger ORDER BY id").fetchall()
        time.sleep(2 * INTERVAL)
    finally:
        stop_receiver(running)

    # The fresh host: a config file with the bucket and the key, an empty state folder, no local copies, and the
    # database's login (the recovered server has the source's roles: its smoke checks log in with it).
    set_env(monkeypatch, {})
    config = tmp_path / "fresh" / "sppg-backup.toml"
    config.parent.mkdir()
    config.write_text(
        f'storage_url = "{gcs_bucket_url}"\nage_identity_file = "{archive["env"]["AGE_IDENTITY_FILE"]}"\n'
        f'state_dir = "{tmp_path / "fresh" / "state"}"\nlocal_dir = ""\n'
        f'database_url = "{archive["env"]["DATABASE_URL"]}"\n'
    )
    result = restore(prefect_api, servers, "--latest", config=config)
    assert rows_of(result, primary.password) == committed and (302, "in the segment being written") in committed
