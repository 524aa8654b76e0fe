"""The WAL feed of a point-in-time restore, with real storage, real age keys and the real restore_command script
run by /bin/sh the way PostgreSQL runs it: it never tells the server "no such file" for a segment storage holds
(that would end the recovery early and promote an older database), it waits for a segment still on the way, and
it fetches only a bounded way ahead of what the server asked for."""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sppg_backup.errors import NotFoundError
from sppg_backup.physical import feed, wal
from sppg_backup.physical.gaps import damaged_wal
from sppg_backup.storage.local import LocalStorage
from sppg_backup.stream.crypto import identities_from

SEGMENTS = [f"0000000100000000000000{n:02X}" for n in range(3, 9)]


def ask(folder: Path, name: str, timeout: float = 10) -> tuple[int, bytes]:
    """What PostgreSQL gets running the restore_command for `name`: the exit code and the file's content."""
    dest = folder.parent / "RECOVERYXLOG"
    dest.unlink(missing_ok=True)
    # PostgreSQL's %p is pg_wal/RECOVERYXLOG, a plain relative name; the test's is quoted to be as plain
    command = feed.restore_command(folder).replace("%f", shlex.quote(name)).replace("%p", shlex.quote(str(dest)))
    command = command.replace("%%", "%")
    done = subprocess.run(command, shell=True, timeout=timeout, capture_output=True, text=True)
    code = done.returncode
    assert code in (0, 1, feed.ABORT), (command, done.stderr)
    return code, dest.read_bytes() if dest.exists() else b""


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def archive(tmp_path: Path, age_key: tuple[Path, str]) -> LocalStorage:
    """Six segments archived the way `wal push` archives them (zstd + age + sha256)."""
    storage = LocalStorage(tmp_path / "storage")
    spool = tmp_path / "spool"
    spool.mkdir()
    for name in SEGMENTS:
        (spool / name).write_bytes(name.encode() * 1000)
        wal.push(storage, spool / name, [age_key[1]])
    return storage


def test_the_script_hands_over_what_arrives_and_says_no_only_for_what_storage_lacks(tmp_path: Path) -> None:
    folder = tmp_path / "wal"
    folder.mkdir()
    feed.prepare(folder, ["00000002.history"], SEGMENTS[:2], latest=True)
    (folder / "00000002.history").write_text("1\t0/3000000\tno recovery target specified\n")
    assert ask(folder, "00000002.history") == (0, b"1\t0/3000000\tno recovery target specified\n")
    assert ask(folder, "00000003.history")[0] == 1  # a timeline storage never had: the probe ends at once
    assert ask(folder, SEGMENTS[2])[0] == 1  # past the end of the archive
    assert ask(folder, "../../etc/passwd")[0] == 1

    later = threading.Timer(0.5, lambda: (folder / SEGMENTS[0]).write_bytes(b"arrived"))
    later.start()
    began = time.monotonic()
    assert ask(folder, SEGMENTS[0]) == (0, b"arrived")  # it waited for the segment on the way
    assert time.monotonic() - began >= 0.4
    assert (folder / feed.ASKED).read_text().strip() == SEGMENTS[0]

    (folder / f"{SEGMENTS[1]}.damaged").touch()
    assert ask(folder, SEGMENTS[1])[0] == feed.ABORT  # --latest needs every segment: the recovery aborts
    feed.prepare(folder, [], SEGMENTS[:2], latest=False)
    assert ask(folder, SEGMENTS[1])[0] == 1  # to a time: PostgreSQL fails it if it needed the segment
    (folder / f"{SEGMENTS[1]}.damaged").unlink()
    (folder / feed.FAILED).touch()
    assert ask(folder, SEGMENTS[1])[0] == feed.ABORT  # fetching failed: never "no such file"


def test_a_folder_named_to_break_the_command_is_only_a_name(tmp_path: Path) -> None:
    folder = tmp_path / "it's $(touch pwned) 100% `x`" / "wal"
    folder.mkdir(parents=True)
    feed.prepare(folder, [], SEGMENTS[:1], latest=True)
    (folder / SEGMENTS[0]).write_bytes(b"ok")
    assert ask(folder, SEGMENTS[0]) == (0, b"ok")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_the_feed_fetches_a_bounded_way_ahead_of_what_the_server_asked(
    archive: LocalStorage, tmp_path: Path, age_key: tuple[Path, str]
) -> None:
    folder = tmp_path / "wal"
    folder.mkdir()
    feed.prepare(folder, [], SEGMENTS, latest=True)
    identities = identities_from(age_key[0])
    with feed.Feed(archive, SEGMENTS, identities, folder, None, ahead=2) as feeding:
        eventually(lambda: feeding.fetched == SEGMENTS[:2])
        time.sleep(0.3)
        assert feeding.fetched == SEGMENTS[:2]  # and no further until the server asks
        assert ask(folder, SEGMENTS[0]) == (0, SEGMENTS[0].encode() * 1000)
        eventually(lambda: feeding.fetched == SEGMENTS[:3])
        assert ask(folder, SEGMENTS[3]) == (0, SEGMENTS[3].encode() * 1000)  # waits for it, then has it
        eventually(lambda: feeding.fetched == SEGMENTS[:6])
    assert feeding.error is None
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == SEGMENTS  # no leftovers


def test_a_damaged_segment_is_marked_and_a_storage_failure_aborts(
    archive: LocalStorage, tmp_path: Path, age_key: tuple[Path, str]
) -> None:
    [damaged] = wal.find(archive, SEGMENTS[1])
    path = archive.path(damaged.key)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    [gone] = wal.find(archive, SEGMENTS[3])
    archive.path(gone.key).unlink()  # listed when the restore began, gone when its turn came

    folder = tmp_path / "wal"
    folder.mkdir()
    feed.prepare(folder, [], SEGMENTS, latest=True)
    with feed.Feed(archive, SEGMENTS, identities_from(age_key[0]), folder, None) as feeding:
        eventually(lambda: feeding.error is not None)
    assert feeding.fetched == [SEGMENTS[0], SEGMENTS[2]]  # the damaged one left out, nothing after the failure
    assert SEGMENTS[1] in damaged_wal(folder) and (folder / f"{SEGMENTS[1]}.damaged").exists()
    with pytest.raises(NotFoundError, match=SEGMENTS[3]):
        feeding.check()
    assert ask(folder, SEGMENTS[3])[0] == feed.ABORT
    assert not [p for p in folder.iterdir() if ".arriving" in p.name or ".fetching" in p.name]


def test_only_segments_on_the_recoverys_timeline_path_are_handed_over() -> None:
    from sppg_backup.physical.gaps import on_path

    size = 16 << 20
    path = [(1, 0), (2, 5 * size + 100)]  # timeline 2 forked inside segment 5
    assert on_path("000000010000000000000004", path, size) and on_path("000000010000000000000005", path, size)
    assert not on_path("000000010000000000000006", path, size)  # the old primary's WAL after the fork
    assert on_path("000000020000000000000005", path, size) and on_path("000000020000000000000009", path, size)
    assert not on_path("000000020000000000000004", path, size) and not on_path("000000030000000000000009", path, size)
    assert on_path("000000070000000000000001", None, size)  # a history that does not parse: PostgreSQL decides
