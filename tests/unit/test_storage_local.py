from pathlib import Path

import pytest

from sppg_backup.errors import PermanentError
from sppg_backup.storage import open_storage, put_bytes
from sppg_backup.storage.local import LocalStorage
from tests.helpers import read_only_dir, tiny_filesystem
from tests.storage_contract import StorageContract


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> LocalStorage:
        return LocalStorage(tmp_path / "store")


def test_file_url_picks_local_backend(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "s").as_uri())
    put_bytes(storage, "a", b"1")
    assert (tmp_path / "s" / "a").read_bytes() == b"1"


def test_read_only_directory_is_a_permanent_error(tmp_path: Path) -> None:
    with read_only_dir(tmp_path / "ro") as root, pytest.raises(PermanentError, match="permission denied"):
        put_bytes(LocalStorage(root), "x", b"1")


def test_full_disk_is_a_permanent_error_and_leaves_nothing(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "tiny") as root:
        storage = LocalStorage(root)
        with pytest.raises(PermanentError, match="no space left"):
            put_bytes(storage, "x", b"1" * (1 << 20))
        assert list(storage.list()) == []
        assert list(root.iterdir()) == []
