import io
import os
from pathlib import Path

import pytest

from sppg_backup.db.catalog import Manifest, Source
from sppg_backup.db.restore import fetch_dump
from sppg_backup.errors import ConfigError, PermanentError
from sppg_backup.storage import get_bytes, put_bytes
from sppg_backup.storage.local import LocalStorage
from sppg_backup.stream import compress, crypto, pack, pipes

DATA = b"".join(b"row %d;beras;ayam;telur\n" % i for i in range(50000)) + os.urandom(100000)


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_compress_decompress_round_trip(kind: str) -> None:
    packed = compress.compressor(io.BytesIO(DATA), kind).read()  # type: ignore[arg-type]
    assert len(packed) < len(DATA)
    out = io.BytesIO()
    writer = compress.decompressing_writer(out, kind)  # type: ignore[arg-type]
    writer.write(packed)
    writer.finish()
    assert out.getvalue() == DATA


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_truncated_compressed_stream_is_detected(kind: str) -> None:
    packed = compress.compressor(io.BytesIO(DATA), kind).read()  # type: ignore[arg-type]
    writer = compress.decompressing_writer(io.BytesIO(), kind)  # type: ignore[arg-type]
    writer.write(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="truncated"):
        writer.finish()


def test_fanout_writes_every_copy_and_nothing_before_commit(tmp_path: Path) -> None:
    a, b = LocalStorage(tmp_path / "a"), LocalStorage(tmp_path / "b")
    fan = pipes.Fanout([(a, "k"), (b, "k")])
    for i in range(0, len(DATA), 7000):
        fan.write(DATA[i : i + 7000])
    assert list(a.list()) == [] and list(b.list()) == []
    infos = fan.commit()
    assert get_bytes(a, "k") == get_bytes(b, "k") == DATA
    assert infos[0].sha256 == infos[1].sha256


def test_fanout_abort_leaves_nothing(tmp_path: Path) -> None:
    a, b = LocalStorage(tmp_path / "a"), LocalStorage(tmp_path / "b")
    fan = pipes.Fanout([(a, "k"), (b, "k")])
    fan.write(DATA)
    fan.abort()
    assert list(a.list()) == [] and list(b.list()) == []


def key_pair(tmp_path: Path, name: str) -> tuple[Path, str]:
    path = tmp_path / name
    return path, crypto.generate_key_file(path)


def test_key_file_works_with_every_recipient(tmp_path: Path) -> None:
    (k1, p1), (k2, p2) = key_pair(tmp_path, "1"), key_pair(tmp_path, "2")
    sealed = io.BytesIO()
    crypto.encrypt(io.BytesIO(DATA), sealed, [p1, p2])
    for key in (k1, k2):
        out = io.BytesIO()
        crypto.decrypt(io.BytesIO(sealed.getvalue()), out, crypto.load_identities(key))
        assert out.getvalue() == DATA
    assert oct(k1.stat().st_mode & 0o777) == "0o600"


def test_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    (_, p1), (k2, _) = key_pair(tmp_path, "1"), key_pair(tmp_path, "2")
    sealed = io.BytesIO()
    crypto.encrypt(io.BytesIO(DATA), sealed, [p1])
    with pytest.raises(PermanentError, match="cannot decrypt.*SPPG_BACKUP_AGE_IDENTITY_FILE"):
        crypto.decrypt(io.BytesIO(sealed.getvalue()), io.BytesIO(), crypto.load_identities(k2))


def test_bad_key_material_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid age public key"):
        crypto.recipients(["age1notakey"])
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    with pytest.raises(ConfigError, match="not an age key"):
        crypto.load_identities(junk)
    with pytest.raises(ConfigError, match="cannot read"):
        crypto.load_identities(tmp_path / "missing.txt")


def stored_backup(tmp_path: Path) -> tuple[LocalStorage, Manifest, Path]:
    key, public = key_pair(tmp_path, "key")
    packed = compress.compressor(io.BytesIO(DATA), "zstd")
    sealed = io.BytesIO()
    crypto.encrypt(packed, sealed, [public])  # type: ignore[arg-type]
    storage = LocalStorage(tmp_path / "s")
    info = put_bytes(storage, "db/x.dump.zst.age", sealed.getvalue())
    manifest = Manifest(
        id="erp_sppg_backup_20261124_200000",
        created_at="2026-11-24T20:00:00Z",
        finished_at="2026-11-24T20:00:01Z",
        duration_seconds=1,
        source=Source(host="h", port=1, database="d", user="u"),
        server_version="15",
        pg_dump_version="15",
        compression="zstd",
        encryption="age",
        recipients=[public],
        data_key="db/x.dump.zst.age",
        size=info.size,
        sha256=info.sha256 or "",
        tables={},
    )
    return storage, manifest, key


def test_fetch_dump_returns_the_plain_archive(tmp_path: Path) -> None:
    storage, manifest, key = stored_backup(tmp_path)
    out = fetch_dump(storage, manifest, crypto.load_identities(key), tmp_path / "plain")
    assert out.read_bytes() == DATA


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_fetch_dump_of_a_damaged_backup_says_corrupt_and_leaves_no_file(tmp_path: Path, damage: str) -> None:
    storage, manifest, key = stored_backup(tmp_path)
    path = storage.path(manifest.data_key)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        del raw[len(raw) // 2 :]
    path.write_bytes(bytes(raw))
    with pytest.raises(PermanentError, match="sha256 mismatch.*corrupt"):
        fetch_dump(storage, manifest, crypto.load_identities(key), tmp_path / "plain")
    assert not (tmp_path / "plain").exists()


@pytest.mark.parametrize("damage", ["none", "flip", "truncate", "valid but another"])
def test_streamed_gives_the_plain_content_and_fails_on_damage_by_the_end(tmp_path: Path, damage: str) -> None:
    """One pass straight from storage: a damaged object fails while it is read, naming it; a whole, valid
    object that is not the one the manifest names (its sha256 differs) fails once it is read to its end."""
    storage, manifest, key = stored_backup(tmp_path)
    path = storage.path(manifest.data_key)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        del raw[len(raw) // 2 :]
    elif damage == "valid but another":
        other = io.BytesIO()
        crypto.encrypt(compress.compressor(io.BytesIO(DATA[:-1]), "zstd"), other, manifest.recipients)  # type: ignore[arg-type]
        raw = bytearray(other.getvalue())
    path.write_bytes(bytes(raw))
    identities = crypto.load_identities(key)
    opened = pack.streamed(storage, manifest.data_key, manifest.size, manifest.sha256, identities, "zstd", "dump x")
    if damage == "none":
        with opened as source:
            assert source.read(1000) == DATA[:1000]  # the caller may stop early: the rest is drained and checked
        return
    expected = "sha256 mismatch" if damage == "valid but another" else "dump x cannot be read: cannot decrypt"
    with pytest.raises(PermanentError, match=expected) as raised, opened as source:
        source.read()
    assert manifest.data_key in str(raised.value)


class CountingSource(io.RawIOBase):
    """An endless-looking source (200 MB) that counts what was read from it."""

    def __init__(self, total: int = 200 << 20) -> None:
        self.left = total
        self.read_bytes = 0
        self.block = os.urandom(1 << 20)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if self.left <= 0:
            return b""
        data = self.block[: min(len(self.block), self.left, size if size > 0 else len(self.block))]
        self.left -= len(data)
        self.read_bytes += len(data)
        return data


def test_a_failing_destination_stops_the_source_and_its_own_error_surfaces(tmp_path: Path) -> None:
    from tests.helpers import tiny_filesystem

    _, public = key_pair(tmp_path, "key")
    source = CountingSource()
    with tiny_filesystem(tmp_path / "small", size="256k") as small:
        fanout = pipes.Fanout([(LocalStorage(small), "x")])
        prefetch = pipes.Prefetch(source)  # type: ignore[arg-type]
        fanout.on_error = prefetch.stop
        with pytest.raises(Exception):  # noqa: B017 - pyrage wraps what it gets; fanout.error is the cause
            crypto.encrypt(compress.compressor(prefetch, "zstd"), fanout, [public])
        fanout.abort()
        assert isinstance(fanout.error, PermanentError) and "no space left" in str(fanout.error)
        assert list(small.iterdir()) == []
    assert source.read_bytes < 40 << 20  # stopped early, not after reading all 200 MB
