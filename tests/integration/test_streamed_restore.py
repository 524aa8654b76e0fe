"""Restoring while the archive is still being written: same database as plain pg_restore, and clear failures."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db import pgdump_format, postgres, streamed_restore
from sppg_backup.errors import CheckFailed
from sppg_backup.sandbox.clusters import fill_sample
from sppg_backup.stream.growing import GrowingFile, Tracking
from tests.dbcheck import drop, table_contents

ODD = """
CREATE TABLE empty_t (id int PRIMARY KEY);
CREATE TABLE "Odd Name" (t text, b bytea);
INSERT INTO "Odd Name" VALUES (E'tab\\there, line\\nbreak, back\\\\slash, ünïcödé', '\\x000102ff'), (NULL, NULL);
CREATE MATERIALIZED VIEW user_count AS SELECT count(*) AS n FROM users;
CREATE TABLE parted (id int, v text) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);
CREATE INDEX ON parted (v);
INSERT INTO parted SELECT g, 'v' || g FROM generate_series(0, 199) g;
CREATE SEQUENCE invoice_no;
SELECT setval('invoice_no', 42);
"""


@pytest.fixture(scope="module")
def source(postgres_cluster: Any) -> Iterator[str]:
    url = postgres_cluster.create_database("streamed_src")
    fill_sample(url, scale=1)
    with postgres.connect(url) as conn:
        conn.execute(ODD)
    yield url
    drop(postgres_cluster, url)


def dump(cluster: Any, url: str, dest: Path, *options: str) -> Path:
    """pg_dump -Fc into a pipe, as the backup does: the archive has no data offsets."""
    conninfo, env = postgres.libpq_env(url)
    with open(dest, "wb") as out:
        dumper = subprocess.Popen(
            [str(cluster.bin_dir / "pg_dump"), "-Fc", *options, conninfo], stdout=subprocess.PIPE, env=env
        )
        assert dumper.stdout is not None
        while chunk := dumper.stdout.read(1 << 16):
            out.write(chunk)
        assert dumper.wait() == 0
    return dest


@pytest.fixture(scope="module")
def archive(postgres_cluster: Any, source: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dump(postgres_cluster, source, tmp_path_factory.mktemp("streamed") / "erp.dump", "-Z0")


def schema(cluster: Any, url: str) -> str:
    conninfo, env = postgres.libpq_env(url)
    done = subprocess.run(
        [str(cluster.bin_dir / "pg_dump"), "--schema-only", "--restrict-key=same", conninfo],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout


def assert_same(cluster: Any, source: str, restored: str) -> None:
    assert table_contents(restored) == table_contents(source)
    assert schema(cluster, restored) == schema(cluster, source)
    with postgres.connect(restored) as conn:
        assert conn.execute("SELECT last_value FROM invoice_no").fetchone() == (42,)
        assert conn.execute("SELECT n FROM user_count").fetchone() == (20,)


def pg_restore(cluster: Any) -> str:
    return str(cluster.bin_dir / "pg_restore")


def test_the_toc_reads_as_pg_restore_lists_it(postgres_cluster: Any, archive: Path) -> None:
    toc = pgdump_format.read_toc(archive.open("rb").read)
    listed = subprocess.run([pg_restore(postgres_cluster), "--list", str(archive)], capture_output=True, text=True)
    ids = [int(line.split(";")[0]) for line in listed.stdout.splitlines() if line and not line.startswith(";")]
    assert set(ids) <= {e.dump_id for e in toc.entries}
    unlisted = {e.desc for e in toc.entries if e.dump_id not in ids}
    assert unlisted <= {"ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE"}, unlisted  # never restored as items
    assert {e.tag for e in toc.data} >= {"users", "invoices", "empty_t", "Odd Name", "parted_1", "parted_2"}


def test_block_boundaries_do_not_depend_on_how_the_bytes_arrive(archive: Path) -> None:
    toc = pgdump_format.read_toc(archive.open("rb").read)
    data = archive.read_bytes()[toc.length :]
    whole = pgdump_format.BlockScanner(toc).feed(data)
    assert len(whole) == len(toc.data) and whole[0][1] == toc.length
    scanner, pieces, at = pgdump_format.BlockScanner(toc), [], 0
    rng = random.Random(7)
    while at < len(data):
        size = rng.choice([1, 2, 3, 5, 11, 4096, 70000])
        pieces += scanner.feed(data[at : at + size])
        at += size
    assert pieces == whole


@pytest.mark.parametrize("small_run", [0, streamed_restore.SMALL_RUN], ids=["one table each", "small tables together"])
def test_a_complete_archive_restores_equal_to_the_source(
    postgres_cluster: Any, source: str, archive: Path, small_run: int
) -> None:
    target = postgres_cluster.create_database(f"streamed_{small_run}")
    streamed_restore.restore(
        target, archive, GrowingFile.complete(archive), pg_restore(postgres_cluster), 2, small_run=small_run
    )
    assert_same(postgres_cluster, source, target)
    drop(postgres_cluster, target)


def write_slowly(archive: Path, dest: Path, grown: GrowingFile, pause: threading.Event | None = None) -> None:
    """Write `archive` to `dest` in small pieces; halfway, wait for `pause` (set by the test) if given."""
    data = archive.read_bytes()
    with open(dest, "wb", buffering=0) as out:
        writer = Tracking(out, grown)
        for at in range(0, len(data), 32768):
            if pause is not None and at >= len(data) // 2 and not pause.is_set():
                pause.wait(60)
            writer.write(data[at : at + 32768])
    grown.finish()


def child_pg_restores() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if "(pg_restore)" in stat and int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            found.append(pid)
    return found


def test_tables_load_while_the_archive_is_still_being_written(
    postgres_cluster: Any, source: str, archive: Path, tmp_path: Path
) -> None:
    target = postgres_cluster.create_database("streamed_growing")
    dest = tmp_path / "growing.dump"
    grown, halfway = GrowingFile(dest), threading.Event()
    writer = threading.Thread(target=write_slowly, args=(archive, dest, grown, halfway))
    writer.start()
    seen: dict[str, Any] = {}

    def watch() -> None:  # what the target holds while the writer waits halfway
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            with postgres.connect(target) as conn:
                rows = conn.execute("SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables").fetchone()
            if rows and rows[0] > 0:
                seen.update(size=grown.size, done=grown.done)
            time.sleep(0.05)
        halfway.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    streamed_restore.restore(target, dest, grown, pg_restore(postgres_cluster), 2)
    writer.join()
    watcher.join()
    assert seen and not seen["done"] and seen["size"] < archive.stat().st_size, "no rows arrived before the end"
    assert_same(postgres_cluster, source, target)
    drop(postgres_cluster, target)


def test_a_download_that_starts_again_restores_the_same(
    postgres_cluster: Any, source: str, archive: Path, tmp_path: Path
) -> None:
    """A retried download rewrites the file from the first byte; the restore waits and goes on."""
    target = postgres_cluster.create_database("streamed_restart")
    dest = tmp_path / "again.dump"
    grown = GrowingFile(dest)
    data = archive.read_bytes()

    def write_twice() -> None:
        with open(dest, "wb", buffering=0) as out:
            Tracking(out, grown).write(data[: len(data) // 3])
        time.sleep(0.3)
        grown.restart()
        write_slowly(archive, dest, grown)

    writer = threading.Thread(target=write_twice)
    writer.start()
    streamed_restore.restore(target, dest, grown, pg_restore(postgres_cluster), 2)
    writer.join()
    assert_same(postgres_cluster, source, target)
    drop(postgres_cluster, target)


def test_a_failed_download_stops_the_restore_with_its_error(
    postgres_cluster: Any, archive: Path, tmp_path: Path
) -> None:
    target = postgres_cluster.create_database("streamed_failed")
    dest = tmp_path / "failing.dump"
    grown = GrowingFile(dest)
    data = archive.read_bytes()

    def fail_halfway() -> None:
        with open(dest, "wb", buffering=0) as out:
            Tracking(out, grown).write(data[: len(data) * 2 // 3])
        time.sleep(0.5)
        grown.fail(CheckFailed("sha256", "backup x: sha256 mismatch, it is corrupt"))

    writer = threading.Thread(target=fail_halfway)
    writer.start()
    with pytest.raises(CheckFailed, match="sha256 mismatch"):
        streamed_restore.restore(target, dest, grown, pg_restore(postgres_cluster), 2)
    writer.join()
    assert not child_pg_restores()
    drop(postgres_cluster, target)


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_archive_fails_with_a_clear_error(
    postgres_cluster: Any, archive: Path, tmp_path: Path, damage: str
) -> None:
    data = bytearray(archive.read_bytes())
    toc = pgdump_format.read_toc(archive.open("rb").read)
    middle = toc.length + (len(data) - toc.length) // 2
    if damage == "truncated":
        del data[middle:]
    else:
        data[middle : middle + 64] = b"\x00" * 64
    broken = tmp_path / "broken.dump"
    broken.write_bytes(bytes(data))
    target = postgres_cluster.create_database(f"streamed_{damage}")
    with pytest.raises(CheckFailed) as failure:
        streamed_restore.restore(target, broken, GrowingFile.complete(broken), pg_restore(postgres_cluster), 2)
    assert "pg_restore failed" in str(failure.value) or "ends early" in str(failure.value)
    drop(postgres_cluster, target)


def test_an_archive_compressed_by_pg_dump_is_restored_the_plain_way(
    postgres_cluster: Any, source: str, tmp_path: Path
) -> None:
    compressed = dump(postgres_cluster, source, tmp_path / "z.dump", "-Z1")
    with pytest.raises(pgdump_format.Unsupported):
        pgdump_format.read_toc(compressed.open("rb").read)
    target = postgres_cluster.create_database("streamed_compressed")
    streamed_restore.restore(target, compressed, GrowingFile.complete(compressed), pg_restore(postgres_cluster), 2)
    assert_same(postgres_cluster, source, target)
    drop(postgres_cluster, target)
