"""Tars read from storage are hostile: crafted members never land or change anything outside the target, and a
refused archive changes nothing inside it either."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from sppg_backup.errors import CheckFailed, PermanentError
from sppg_backup.stream import safe_tar


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "", mode: int = 0o644) -> tuple:
    return name, kind, data, link, mode


def crafted(*members: tuple) -> Callable[[], contextlib.AbstractContextManager[IO[bytes]]]:  # type: ignore[type-arg]
    """A tar with exactly these members (tarfile writes what it is given, as an attacker's tool would)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, link, mode in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.size = kind, link, mode, len(data)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    content = buffer.getvalue()

    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        yield io.BytesIO(content)

    return opener


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    (outside / "passwd").chmod(0o644)
    target = tmp_path / "app"
    target.mkdir()
    (target / "keep.txt").write_text("the live folder's file\n")
    return {"outside": outside, "target": target}


def unchanged(place: dict[str, Path]) -> None:
    passwd = place["outside"] / "passwd"
    assert passwd.read_text() == "root:x:0:0\n" and stat.S_IMODE(passwd.stat().st_mode) == 0o644
    assert sorted(p.name for p in place["outside"].iterdir()) == ["passwd"]


REFUSED = {
    "absolute name": [member("/OUTSIDE/passwd", data=b"owned")],
    "dot-dot name": [member("../outside/passwd", data=b"owned")],
    "dot-dot inside a name": [member("a/../../outside/passwd", data=b"owned")],
    "hard link to an outside path, then a file of that name": [
        member("pw", tarfile.LNKTYPE, link="OUTSIDE/passwd"),
        member("pw", data=b"owned"),
    ],
    "hard link with an absolute target": [member("pw", tarfile.LNKTYPE, link="/OUTSIDE/passwd")],
    "hard link with a dot-dot target": [member("pw", tarfile.LNKTYPE, link="../outside/passwd")],
    "hard link to a file of the live folder": [member("pw", tarfile.LNKTYPE, link="keep.txt")],
    "symlink, then a file below it": [
        member("etc", tarfile.SYMTYPE, link="OUTSIDE"),
        member("etc/passwd", data=b"owned"),
    ],
    "a file below a name, then that name as a symlink": [
        member("etc/passwd", data=b"x"),
        member("etc", tarfile.SYMTYPE, link="OUTSIDE"),
    ],
    "a name twice": [member("a", data=b"1"), member("a", tarfile.SYMTYPE, link="OUTSIDE/passwd")],
    "a device": [member("dev", tarfile.CHRTYPE)],
    "a fifo": [member("fifo", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_crafted_member_refuses_the_whole_archive_and_changes_nothing(place: dict[str, Path], case: str) -> None:
    members = [
        (name.replace("OUTSIDE", str(place["outside"])), kind, data, link.replace("OUTSIDE", str(place["outside"])), m)
        for name, kind, data, link, m in REFUSED[case]
    ]
    before = sorted(p.name for p in place["target"].iterdir())
    with pytest.raises(CheckFailed, match="refusing"):
        safe_tar.extract(crafted(member("first.txt", data=b"written first"), *members), place["target"], "the tar")
    unchanged(place)
    assert sorted(p.name for p in place["target"].iterdir()) == before  # checked whole before the first write


def test_links_in_the_live_folder_are_replaced_never_written_through(place: dict[str, Path]) -> None:
    target, passwd = place["target"], place["outside"] / "passwd"
    os.link(passwd, target / "hard")  # the live folder already holds links that lead out
    os.symlink(passwd, target / "soft")
    os.symlink(place["outside"], target / "dir")
    opener = crafted(
        member("hard", data=b"new hard", mode=0o600),
        member("soft", data=b"new soft", mode=0o600),
        member("dir/inner", data=b"new inner"),
    )
    done = safe_tar.extract(opener, target, "the tar")
    unchanged(place)
    assert (target / "hard").read_bytes() == b"new hard" and (target / "soft").read_bytes() == b"new soft"
    assert (target / "dir").is_dir() and not (target / "dir").is_symlink()
    assert (target / "dir" / "inner").read_bytes() == b"new inner" and done.entries == 3


def test_setuid_bits_are_dropped_unless_asked_for_and_outside_links_are_named(place: dict[str, Path]) -> None:
    opener = crafted(
        member("shared", tarfile.DIRTYPE, mode=0o2775),
        member("shared/tool", data=b"#!/bin/sh\n", mode=0o4755),
        member("shared/link", tarfile.SYMTYPE, link="/etc/passwd"),
        member("shared/same", tarfile.LNKTYPE, link="shared/tool"),
    )
    done = safe_tar.extract(opener, place["target"], "the tar")
    tool = place["target"] / "shared" / "tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755 and done.setid_dropped == ["shared/tool"]
    assert stat.S_IMODE((place["target"] / "shared").stat().st_mode) == 0o2775  # a folder's group sharing stays
    assert done.links_outside == ["shared/link -> /etc/passwd"]
    assert os.readlink(place["target"] / "shared" / "link") == "/etc/passwd"
    assert (place["target"] / "shared" / "same").stat().st_ino == tool.stat().st_ino
    done = safe_tar.extract(opener, place["target"] / "again", "the tar", keep_setid=True)
    assert stat.S_IMODE((place["target"] / "again" / "shared" / "tool").stat().st_mode) == 0o4755


def test_a_truncated_tar_is_refused_before_anything_is_written(place: dict[str, Path]) -> None:
    whole = crafted(member("a.txt", data=b"a" * 5000), member("b.txt", data=b"b" * 5000))
    with whole() as source:
        cut = source.read()[:3000]

    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        yield io.BytesIO(cut)

    with pytest.raises(CheckFailed, match="tar"):
        safe_tar.extract(opener, place["target"], "the tar")
    assert sorted(p.name for p in place["target"].iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_one_pass_refuses_the_same_members_and_writes_nothing_outside(
    place: dict[str, Path], tmp_path: Path, case: str
) -> None:
    """The base backup's one pass (checked member by member as it streams) refuses what the two passes do."""
    members = [
        (name.replace("OUTSIDE", str(place["outside"])), kind, data, link.replace("OUTSIDE", str(place["outside"])), m)
        for name, kind, data, link, m in REFUSED[case]
    ]
    new = tmp_path / "data"
    new.mkdir()
    opener = crafted(member("first.txt", data=b"written first"), *members)
    with opener() as source, pytest.raises(CheckFailed, match="refusing"):
        safe_tar.extract_once(source, new, "the tar")
    unchanged(place)
    assert (new / "first.txt").read_bytes() == b"written first"  # the caller removes the whole folder
    for path in new.rglob("*"):
        assert path.is_symlink() or os.path.commonpath([path.resolve(), new.resolve()]) == str(new.resolve())


def test_one_pass_unpacks_what_two_passes_do(place: dict[str, Path], tmp_path: Path) -> None:
    opener = crafted(
        member("base", tarfile.DIRTYPE, mode=0o700),
        member("base/1", data=b"x" * 70000, mode=0o600),
        member("link", tarfile.SYMTYPE, link="base/1"),
        member("same", tarfile.LNKTYPE, link="base/1"),
        member("tool", data=b"#!/bin/sh\n", mode=0o4755),
    )
    two, one = tmp_path / "two", tmp_path / "one"
    one.mkdir()
    safe_tar.extract(opener, two, "the tar")
    with opener() as source:
        done = safe_tar.extract_once(source, one, "the tar")
    assert done.entries == 5 and done.setid_dropped == ["tool"]
    for path in sorted(two.rglob("*")):
        twin = one / path.relative_to(two)
        assert os.lstat(twin).st_mode == os.lstat(path).st_mode, path
        assert twin.is_symlink() or twin.is_dir() or twin.read_bytes() == path.read_bytes()
    assert (one / "same").stat().st_ino == (one / "base" / "1").stat().st_ino
    with opener() as source, pytest.raises(PermanentError, match="not empty"):
        safe_tar.extract_once(source, one, "the tar")
