"""The behaviours every storage backend must have; each backend's test subclasses StorageContract."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from sppg_backup.errors import NotFoundError, PermanentError
from sppg_backup.storage import Storage, get_bytes, put, put_bytes


class Interrupted(Exception):
    pass


class FailingReader(io.RawIOBase):
    """Gives `good` bytes, then fails: an upload cut off halfway."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.left <= 0:
            raise Interrupted("connection lost")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


class StorageContract:
    """Subclass and provide a `storage` fixture giving an empty backend."""

    def test_round_trip_small(self, storage: Storage) -> None:
        info = put_bytes(storage, "db/a.bin", b"hello")
        assert info.size == 5
        assert info.sha256 == hashlib.sha256(b"hello").hexdigest()
        assert get_bytes(storage, "db/a.bin") == b"hello"

    def test_round_trip_empty_object(self, storage: Storage) -> None:
        put_bytes(storage, "empty", b"")
        assert get_bytes(storage, "empty") == b""
        assert storage.stat("empty").size == 0

    def test_large_object_streams_in_and_out(self, storage: Storage) -> None:
        data = os.urandom(3 << 20) + os.urandom(12345)
        info = put(storage, "big/object", io.BytesIO(data))
        assert info.size == len(data)
        digest = hashlib.sha256()
        with storage.open_read("big/object") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()

    def test_stat_reports_size_and_sha256(self, storage: Storage) -> None:
        put_bytes(storage, "s/x", b"abc" * 1000)
        info = storage.stat("s/x")
        assert info.size == 3000
        assert info.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest()

    def test_overwrite_replaces_content(self, storage: Storage) -> None:
        put_bytes(storage, "k", b"one")
        put_bytes(storage, "k", b"two!")
        assert get_bytes(storage, "k") == b"two!"

    def test_list_by_prefix(self, storage: Storage) -> None:
        for key in ("db/1.manifest.json", "db/1.dump", "files/x", "dbx/other"):
            put_bytes(storage, key, b"1")
        assert sorted(o.key for o in storage.list("db/")) == ["db/1.dump", "db/1.manifest.json"]
        assert len(list(storage.list(""))) == 4
        assert list(storage.list("nothing/")) == []

    def test_list_by_a_prefix_that_ends_inside_a_name(self, storage: Storage) -> None:
        for key in ("files/erp_1.manifest.json", "files/erp_2.manifest.json", "files/blobs/ab/x", "files/e/y", "f/z"):
            put_bytes(storage, key, b"1")
        assert sorted(o.key for o in storage.list("files/erp_")) == [
            "files/erp_1.manifest.json",
            "files/erp_2.manifest.json",
        ]
        assert sorted(o.key for o in storage.list("files/e")) == [
            "files/e/y",
            "files/erp_1.manifest.json",
            "files/erp_2.manifest.json",
        ]
        assert [o.key for o in storage.list("files/blobs/a")] == ["files/blobs/ab/x"]

    def test_missing_key_is_not_found(self, storage: Storage) -> None:
        with pytest.raises(NotFoundError):
            storage.stat("no/such")
        with pytest.raises(NotFoundError):
            storage.open_read("no/such")
        with pytest.raises(NotFoundError):
            storage.delete("no/such")

    def test_delete_removes_only_that_key(self, storage: Storage) -> None:
        put_bytes(storage, "d/1", b"1")
        put_bytes(storage, "d/2", b"2")
        storage.delete("d/1")
        assert [o.key for o in storage.list("d/")] == ["d/2"]

    def test_interrupted_upload_leaves_nothing_visible(self, storage: Storage) -> None:
        with pytest.raises(Interrupted):
            put(storage, "cut/off", FailingReader(2 << 20))
        assert list(storage.list("cut/")) == []
        with pytest.raises(NotFoundError):
            storage.stat("cut/off")

    def test_interrupted_overwrite_keeps_old_content(self, storage: Storage) -> None:
        put_bytes(storage, "keep/me", b"good backup")
        with pytest.raises(Interrupted):
            put(storage, "keep/me", FailingReader(1 << 20))
        assert get_bytes(storage, "keep/me") == b"good backup"

    def test_aborted_upload_is_invisible(self, storage: Storage) -> None:
        upload = storage.open_write("ab/x")
        upload.write(b"partial")
        upload.abort()
        assert list(storage.list("ab/")) == []

    def test_keys_cannot_escape_the_root(self, storage: Storage) -> None:
        for bad in ("../x", "/abs", "a//b", "a/./b", "", "a\0b"):
            with pytest.raises(PermanentError, match="not a name in storage"):
                storage.open_write(bad)
            with pytest.raises(PermanentError, match="not a name in storage"):
                storage.stat(bad)

    def test_describe_names_a_url_a_person_can_use(self, storage: Storage) -> None:
        assert "db/x" in storage.describe("db/x")

    def test_create_is_create_if_absent_even_under_concurrency(self, storage: Storage) -> None:
        from concurrent.futures import ThreadPoolExecutor

        assert storage.create("db/claim.reserved", b"first")
        assert not storage.create("db/claim.reserved", b"second")
        assert get_bytes(storage, "db/claim.reserved") == b"first"
        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(lambda n: storage.create("db/race.reserved", str(n).encode()), range(8)))
        assert won.count(True) == 1
        assert get_bytes(storage, "db/race.reserved") == str(won.index(True)).encode()
        assert [o.key for o in storage.list("db/")] == ["db/claim.reserved", "db/race.reserved"]
