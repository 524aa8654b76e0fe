"""file:// backend: atomic writes (temporary name, fsync, rename) into a directory."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from sppg_backup.errors import ConfigError, NotFoundError, PermanentError, TransientError
from sppg_backup.storage.base import ObjectInfo, Storage, check_key, file_sha256, final_digest

PARTIAL_MARK = ".partial-"
WRITEBACK_STEP = 8 << 20


def _os_error(exc: OSError, what: str) -> Exception:
    if exc.errno == errno.ENOSPC:
        return PermanentError(f"{what}: no space left on device")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermanentError(f"{what}: permission denied ({exc.strerror})")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG):
        return PermanentError(f"{what}: {exc.strerror}; check the configured path")
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"{what}: does not exist")
    return TransientError(f"{what}: {exc.strerror}")


class LocalUpload:
    def __init__(self, storage: LocalStorage, key: str, hashed: bool = True) -> None:
        self._final = storage.path(key)
        self._key = key
        self._what = storage.describe(key)
        self._temp = self._final.with_name(f".{self._final.name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}")
        self._sha = hashlib.sha256() if hashed else None
        self._size = 0
        self._synced = 0
        try:
            self._final.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = open(self._temp, "xb")  # noqa: SIM115 - closed in commit/abort
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)  # held while it is written: a live upload, not a leftover
        except OSError as exc:
            raise _os_error(exc, f"cannot write {self._what}") from exc

    def write(self, data: bytes | memoryview) -> int:
        try:
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise _os_error(exc, f"cannot write {self._what}") from exc
        if self._sha is not None:
            self._sha.update(data)
        self._size += len(data)
        if self._size - self._synced >= WRITEBACK_STEP:
            self._start_writeback()
        return len(data)

    def _start_writeback(self) -> None:
        """Start writing to disk now, so the final fsync is short, and keep backups out of the page cache."""
        self._file.flush()
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(self._file.fileno(), self._synced, self._size - self._synced, os.POSIX_FADV_DONTNEED)
        self._synced = self._size

    def commit(self, sha256: str | None = None) -> ObjectInfo:
        digest = final_digest(self._sha, sha256)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            written = self._temp.stat().st_size
            if written != self._size:
                raise PermanentError(f"{self._what}: wrote {written} bytes, expected {self._size}")
            _set_sha256(self._temp, digest)
            os.replace(self._temp, self._final)
            _fsync_dir(self._final.parent)
        except OSError as exc:
            self.abort()
            raise _os_error(exc, f"cannot write {self._what}") from exc
        except BaseException:
            self.abort()
            raise
        mtime = datetime.fromtimestamp(self._final.stat().st_mtime, UTC)
        return ObjectInfo(self._key, self._size, mtime, digest)

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
            self._file.close()
        self._temp.unlink(missing_ok=True)


SHA256_XATTR = "user.sppg.sha256"


def _set_sha256(path: Path, digest: str) -> None:
    """Keep the checksum with the file, so stat() need not read it; not every filesystem allows this."""
    with contextlib.suppress(OSError):
        os.setxattr(path, SHA256_XATTR, digest.encode())


def _held(path: Path, grace: float = 10) -> bool:
    """Is a live process writing this temporary file (it holds its lock, or made it less than `grace` s ago)?"""
    try:
        if time.time() - path.stat().st_mtime < grace:  # between its open and its lock
            return True
        with open(path, "rb") as probe:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """A directory as object storage; keys map to paths below the root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.folder: Path | None = self.root
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def describe(self, key: str) -> str:
        return str(self.path(key))

    def open_write(self, key: str, hashed: bool = True) -> LocalUpload:
        return LocalUpload(self, key, hashed)

    def link(self, source: Storage, key: str) -> ObjectInfo:
        """Give `source`'s object a name here too, atomically, without copying (same filesystem only)."""
        if source.folder is None:
            raise PermanentError(f"cannot link {source.describe(key)} into {self.url}: not a local folder")
        final = self.path(key)
        temp = final.with_name(f".{final.name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(source.folder / check_key(key), temp)
            os.replace(temp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise _os_error(exc, f"cannot link {self.describe(key)}") from exc
        return self.stat(key)

    def move(self, source: str, dest: str) -> None:
        final = self.path(dest)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path(source), final)  # the sha256 xattr goes with the file
            _fsync_dir(final.parent)
        except OSError as exc:
            raise _os_error(exc, f"cannot move {self.describe(source)} to {self.describe(dest)}") from exc

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise _os_error(exc, f"cannot read {self.describe(key)}") from exc

    def stat(self, key: str) -> ObjectInfo:
        """Size, mtime and the sha256 recorded when written (hashed from disk if none was recorded)."""
        path = self.path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise _os_error(exc, f"cannot stat {self.describe(key)}") from exc
        try:
            digest = os.getxattr(path, SHA256_XATTR).decode()
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise _os_error(exc, f"cannot stat {self.describe(key)}") from exc
            digest = file_sha256(path)
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), digest)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            if self.root.exists():  # a wrong path, not an empty storage: listing nothing would prune or alert wrongly
                raise ConfigError(f"storage {self.root} is not a folder; check the storage URL")
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            # Only descend where keys can start with `prefix` (a walk of every blob to find a few manifests is slow).
            here = Path(dirpath).relative_to(self.root).as_posix()
            inside = "" if here == "." else here + "/"
            dirnames[:] = sorted(
                d for d in dirnames if (inside + d + "/").startswith(prefix) or prefix.startswith(inside + d + "/")
            )
            for name in sorted(filenames):
                if PARTIAL_MARK in name:
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def abandoned_uploads(self, remove: bool = False, prefix: str = "", grace: float = 10) -> tuple[str, ...]:
        """Temporary files of uploads whose process is gone (killed mid-write), removed with `remove`."""
        found: tuple[str, ...] = ()
        top = self.root / prefix if prefix else self.root
        if not top.is_dir():
            return found
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                path = Path(dirpath) / name
                if PARTIAL_MARK not in name or _held(path, grace):
                    continue
                found += (str(path),)
                if remove:
                    with contextlib.suppress(OSError):
                        path.unlink()
        return found

    def create(self, key: str, data: bytes) -> bool:
        final = self.path(key)
        temp = final.with_name(f".{final.name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.link(temp, final)  # fails if the key exists: the atomic create-if-absent of a filesystem
            _fsync_dir(final.parent)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise _os_error(exc, f"cannot write {self.describe(key)}") from exc
        finally:
            temp.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except OSError as exc:
            raise _os_error(exc, f"cannot delete {self.describe(key)}") from exc
