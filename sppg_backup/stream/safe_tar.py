"""Unpack a tar read from storage into one folder, treating every member as hostile.

Anyone who can write to the bucket can make a tar (the public key is in every manifest), and tarfile's own
filters differ between Python releases (3.11.7 does not check hard-link targets). So the members are checked
first, all of them, before anything is written: names relative and clean, each name once, links only to
files of the same archive, no member below a symlink member, only files, folders and links. Then they are
written without ever following a link: files to a temporary name and renamed (an existing hard link or
symlink in the way is replaced, never written through), every parent made a real folder inside the target.
Setuid and setgid bits of files are dropped unless asked for (a folder's setgid bit only passes its group on).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from sppg_backup.errors import CheckFailed, PermanentError

SETID = stat.S_ISUID | stat.S_ISGID
BUFFER = 1 << 20  # tarfile reads a stream 10 KiB at a time by default: half the speed of this
Opener = Callable[[], AbstractContextManager[IO[bytes]]]


@dataclass
class Unpacked:
    entries: int = 0
    bytes: int = 0
    links_outside: list[str] = field(default_factory=list)  # symlinks that point outside the target (kept as links)
    setid_dropped: list[str] = field(default_factory=list)


def clean_name(name: str, what: str) -> str | None:
    """The member's name as a relative path inside the target; None for the root itself. Raises on names that
    could leave it."""
    if "\0" in name or name.startswith("/") or "\\" in name:
        raise CheckFailed(what, f"{what} names {name!r}: not a relative path; refusing the whole archive")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise CheckFailed(what, f"{what} names {name!r}, which leads outside the target; refusing the whole archive")
    return "/".join(parts) or None


class Checks:
    """The checks on each member, given in archive order; what an earlier member was decides a later one's fate."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.seen: dict[str, str] = {}
        self.implied: set[str] = set()  # folders that earlier members are inside
        self.count = self.size = 0

    def see(self, member: tarfile.TarInfo) -> str | None:
        """The member's clean name (None for the root), or raise when it is refused."""
        what, seen = self.what, self.seen
        name = clean_name(member.name, what)
        if name is None:
            return None
        if name in seen:
            raise CheckFailed(what, f"{what} names {name!r} twice; refusing the whole archive")
        parents = [str(p) for p in PurePosixPath(name).parents][:-1]
        for parent in parents:
            if seen.get(parent, "dir") != "dir":
                raise CheckFailed(what, f"{what} puts {name!r} below {parent!r}, which is not a folder; refusing")
        if name in self.implied and not member.isdir():
            raise CheckFailed(what, f"{what} has entries below {name!r}, then {name!r} as a file or link; refusing")
        self.implied.update(parents)
        if member.islnk():
            source = clean_name(member.linkname, what)
            if source is None or seen.get(source) != "file":
                raise CheckFailed(
                    what, f"{what} hard-links {name!r} to {member.linkname!r}, not a file of the archive; refusing"
                )
        elif member.issym():
            if "\0" in member.linkname:
                raise CheckFailed(what, f"{what} has a symlink {name!r} with a NUL in its target; refusing")
        elif not (member.isreg() or member.isdir()):
            raise CheckFailed(what, f"{what} holds {name!r}, a device or pipe, not a file; refusing the whole archive")
        seen[name] = "dir" if member.isdir() else "file" if member.isreg() else "link"
        self.count += 1
        self.size += member.size if member.isreg() else 0
        return name


def _real_folder(root: Path, relative: str) -> Path:
    """`root/relative` as a real folder (not a link): each component made or, when something else is in the
    way, replaced; nothing outside `root` is looked at."""
    path = root
    for part in PurePosixPath(relative).parts:
        path = path / part
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            path.mkdir()
            continue
        if not stat.S_ISDIR(info.st_mode):
            path.unlink()  # a file or a symlink where the archive has a folder
            path.mkdir()
    return path


def _clear(path: Path) -> None:
    """Make room for a member (after the checks, only inside the target)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _mtime_ns(member: tarfile.TarInfo) -> int:
    seconds, _, fraction = member.pax_headers.get("mtime", "").partition(".")
    if seconds.isdigit():
        return int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9] or 0)
    return int(member.mtime * 10**9)


def extract(open_tar: Opener, target: Path, what: str, keep_setid: bool = False) -> Unpacked:
    """Check every member of the tar `open_tar` gives (twice opened: checked, then written), then unpack it."""
    if target.exists() and not target.is_dir():
        raise PermanentError(f"{target} is a file, not a folder; give the folder to restore into")
    checks = Checks(what)
    try:
        with open_tar() as source, tarfile.open(fileobj=source, mode="r|", bufsize=BUFFER) as tar:
            for member in tar:
                checks.see(member)
    except tarfile.TarError as exc:
        raise CheckFailed(what, f"{what} is not a readable tar: {exc}") from None
    target.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target).free
    if checks.size > free:
        raise PermanentError(f"{target} has {free} bytes free, {what} needs {checks.size}; free space first")
    with open_tar() as source:
        done = _write(source, target, what, keep_setid, lambda member: clean_name(member.name, what))
    return Unpacked(checks.count, checks.size, done.links_outside, done.setid_dropped)


def extract_once(source: IO[bytes], target: Path, what: str) -> Unpacked:
    """One pass for a new, empty target the caller removes when this fails (a restored data directory): each
    member checked, against all before it, just before it is written. The same rules as `extract`, so nothing
    is ever written outside `target`; a refused archive leaves only what came before it, inside."""
    if any(target.iterdir()):
        raise PermanentError(f"{target} is not empty; one-pass unpacking needs a new folder")
    checks = Checks(what)
    done = _write(source, target, what, False, checks.see, writeback=True)
    return Unpacked(checks.count, checks.size, done.links_outside, done.setid_dropped)


def _write(
    source: IO[bytes],
    target: Path,
    what: str,
    keep_setid: bool,
    name_of: Callable[[tarfile.TarInfo], str | None],
    writeback: bool = False,
) -> Unpacked:
    """Write the members, never following a link; `name_of` gives each one's checked name."""
    root = target.resolve()
    done = Unpacked()
    folders: list[tuple[Path, int, int]] = []
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=BUFFER) as tar:
            for member in tar:
                name = name_of(member)
                if name is None:
                    continue
                parent = _real_folder(root, str(PurePosixPath(name).parent))
                path = parent / PurePosixPath(name).name
                mode = member.mode & 0o7777
                if mode & SETID and not keep_setid and member.isreg():  # a folder's setgid only shares its group
                    mode &= ~SETID
                    done.setid_dropped.append(name)
                if member.isdir():
                    _real_folder(root, name)
                    folders.append((path, mode, _mtime_ns(member)))
                    continue
                temporary = parent / f".{path.name}.sppg-{uuid.uuid4().hex[:8]}"
                try:
                    if member.isreg():
                        content = tar.extractfile(member)
                        assert content is not None
                        with open(temporary, "xb") as out:
                            shutil.copyfileobj(content, out, 1 << 20)
                            if writeback:
                                _start_writeback(out)
                        _own(temporary, member)
                        os.chmod(temporary, mode)
                    elif member.islnk():
                        os.link(root / str(clean_name(member.linkname, what)), temporary, follow_symlinks=False)
                    else:
                        os.symlink(member.linkname, temporary)
                        _own(temporary, member)
                        if _outside(root, parent, member.linkname):
                            done.links_outside.append(f"{name} -> {member.linkname}")
                    if not member.islnk():
                        os.utime(temporary, ns=(_mtime_ns(member),) * 2, follow_symlinks=False)
                    _clear(path)
                    os.replace(temporary, path)
                finally:
                    if os.path.lexists(temporary):
                        temporary.unlink()
    except tarfile.TarError as exc:
        raise CheckFailed(what, f"{what} could not be read to its end: {exc}") from None
    except OSError as exc:
        raise PermanentError(f"cannot unpack {what} into {target}: {exc.strerror or exc}") from None
    for path, mode, mtime in reversed(folders):  # deepest first: writing into a folder changes its mtime
        if stat.S_ISDIR(os.lstat(path).st_mode):
            os.chmod(path, mode)
            os.utime(path, ns=(mtime, mtime))
    return done


def _start_writeback(out: IO[bytes]) -> None:
    """Send a written file to disk now (asynchronously): a server started on a data directory fsyncs all of it
    first, and a gigabyte of dirty pages would stall every fsync on the machine (the Prefect server's too)."""
    out.flush()
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _own(path: Path, member: tarfile.TarInfo) -> None:
    if os.geteuid() == 0:  # as root, the owners the files had (numeric ids: this host may name them otherwise)
        os.chown(path, member.uid, member.gid, follow_symlinks=False)


def _outside(root: Path, parent: Path, link: str) -> bool:
    """Does a symlink lead out of the target (by its text; it is never followed here)?"""
    leads = os.path.normpath(os.path.join(parent, link))
    return os.path.commonpath([leads, str(root)]) != str(root)
