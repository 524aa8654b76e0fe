"""WAL uploads copied to the replicas in the background, and a partial segment a replica holds without its whole
segment never taken for the end of the WAL."""

from __future__ import annotations

from pathlib import Path

from sppg_backup.ops.replicas import Copier
from sppg_backup.physical.pitr import _superseded
from sppg_backup.storage import get_bytes, put_bytes
from sppg_backup.storage.local import LocalStorage


def test_the_copier_copies_the_newest_upload_and_tells_what_failed(tmp_path: Path) -> None:
    primary, replica = LocalStorage(tmp_path / "primary"), LocalStorage(tmp_path / "replica")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the second replica's folder should be")
    warned: list[str] = []
    copier = Copier(primary, (replica, LocalStorage(blocked)), warned.append)
    put_bytes(primary, "wal/000000010000000000000003.partial.zst", b"first")
    copier.submit(["wal/000000010000000000000003.partial.zst"])
    put_bytes(primary, "wal/000000010000000000000003.partial.zst", b"second")
    copier.submit(["wal/000000010000000000000003.partial.zst", "wal/gone-meanwhile"])
    copier.close()
    assert get_bytes(replica, "wal/000000010000000000000003.partial.zst") == b"second"
    assert warned and all("blocked" in line for line in warned)  # one line per object the replica lacks


def test_a_partial_segment_with_whole_segments_after_it_is_not_the_end_of_the_wal() -> None:
    archived = {"000000010000000000000002", "000000010000000000000004", "00000002.history"}
    assert _superseded("000000010000000000000003", archived)  # its whole copy failed; 4 came after
    assert not _superseded("000000010000000000000005", archived)  # the one being written
    assert not _superseded("000000020000000000000003", archived)  # another timeline's
