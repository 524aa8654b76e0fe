import pytest

from sppg_backup.storage import get_bytes, open_storage, put_bytes
from sppg_backup.storage.gcs import GcsStorage
from tests.storage_contract import StorageContract

pytestmark = pytest.mark.integration


class TestGcsStorage(StorageContract):
    @pytest.fixture
    def storage(self, gcs_bucket_url: str) -> GcsStorage:
        storage = open_storage(gcs_bucket_url)
        assert isinstance(storage, GcsStorage)
        return storage


def test_prefix_is_applied_once(gcs_bucket_url: str) -> None:
    storage = open_storage(gcs_bucket_url)
    assert isinstance(storage, GcsStorage)
    put_bytes(storage, "db/x", b"1")
    names = [blob.name for blob in storage.client.list_blobs(storage.bucket)]
    assert names == ["backups/db/x"]
    assert storage.describe("db/x") == gcs_bucket_url + "/db/x"
    assert get_bytes(open_storage(gcs_bucket_url + "/"), "db/x") == b"1"
