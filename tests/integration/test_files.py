"""Uploads snapshots: incremental, deduplicated, restorable at every version, with odd files and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.errors import CheckFailed, NotFoundError, PermanentError
from sppg_backup.files import restore, snapshots
from sppg_backup.files.blobs import BlobStore
from sppg_backup.storage import open_storage
from sppg_backup.stream import crypto
from tests.helpers import file_tree, tiny_filesystem

pytestmark = pytest.mark.integration


def make_uploads(root: Path) -> Path:
    (root / "2024" / "12" / "01").mkdir(parents=True)
    (root / "2024" / "12" / "01" / "invoice INV-0001.pdf").write_bytes(b"%PDF-1.4 " + os.urandom(3000))
    (root / "lampiran ünïcødé — surat.txt").write_text("Surat jalan SPPG\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))  # streamed in 1 MB pieces
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o750)
    os.symlink("2024/12/01/invoice INV-0001.pdf", root / "latest invoice.pdf")
    os.symlink("does-not-exist", root / "dangling")
    os.utime(root / "empty.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


@pytest.fixture
def place(tmp_path: Path, age_key: tuple[Path, str]) -> dict[str, Any]:
    uploads = make_uploads(tmp_path / "uploads")
    return {
        "uploads": uploads,
        "storage": open_storage((tmp_path / "storage").as_uri()),
        "state": tmp_path / "state",
        "recipients": [age_key[1]],
        "identities": crypto.load_identities(age_key[0]),
        "tmp": tmp_path,
    }


def snap(place: dict[str, Any], **kwargs: Any) -> snapshots.Snapshot:
    storage = place["storage"]
    snap_id = snapshots.reserve_id(storage, "files", datetime.now(UTC))
    taken = snapshots.take(
        storage,
        "files",
        [snapshots.Source(place["uploads"], "")],
        place["recipients"],
        place["state"],
        snap_id,
        **kwargs,
    )
    assert taken is not None
    return taken


def stored_keys(place: dict[str, Any]) -> set[str]:
    return {o.key for o in place["storage"].list("files/")}


def test_a_restore_gives_back_every_file_with_content_mode_mtime_and_links(place: dict[str, Any]) -> None:
    taken = snap(place)
    assert (taken.files, taken.symlinks, taken.skipped) == (5, 2, [])
    target = place["tmp"] / "restored"
    result = restore.restore(place["storage"], taken, place["identities"], target)
    assert result.files == 5
    assert file_tree(target) == file_tree(place["uploads"])


def test_storage_holds_no_plain_content_or_names(place: dict[str, Any]) -> None:
    snap(place)
    root = Path(place["storage"].root)
    for path in root.rglob("*"):
        if path.is_file() and not path.name.endswith(".manifest.json"):
            assert path.read_bytes().startswith(b"age-encryption.org/v1")
    stored = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert b"Surat jalan" not in stored and b"lampiran" not in stored


def test_a_run_with_nothing_changed_uploads_only_a_manifest(place: dict[str, Any]) -> None:
    snap(place)
    before = stored_keys(place)
    again = snap(place)
    assert again.uploaded_blobs == 0
    assert stored_keys(place) - before == {snapshots.manifest_key("files", again.id)}
    shutil.rmtree(place["state"])  # without the local cache every file is hashed, still nothing uploaded
    third = snap(place)
    assert third.uploaded_blobs == 0
    assert stored_keys(place) - before == {snapshots.manifest_key("files", i) for i in (again.id, third.id)}


def test_only_new_or_changed_content_is_uploaded_and_deleted_files_stay_in_older_snapshots(
    place: dict[str, Any],
) -> None:
    first = snap(place)
    uploads = place["uploads"]
    (uploads / "script.sh").write_text("#!/bin/sh\necho changed\n")
    (uploads / "2024" / "12" / "02").mkdir()
    (uploads / "2024" / "12" / "02" / "new.pdf").write_bytes(b"%PDF new")
    (uploads / "big.bin").unlink()
    second = snap(place)
    assert second.uploaded_blobs == 2 and second.files == 5
    names = {n.path for n in snapshots.read_index(place["storage"], second, place["identities"])}
    assert "big.bin" not in names and "2024/12/02/new.pdf" in names
    back = place["tmp"] / "old"
    restore.restore(place["storage"], first, place["identities"], back, prefix="big.bin")
    assert (back / "big.bin").stat().st_size == 3 << 20


def test_a_file_edited_several_times_can_be_restored_at_each_version(place: dict[str, Any]) -> None:
    invoice = place["uploads"] / "2024" / "12" / "01" / "invoice INV-0001.pdf"
    contents, taken = [], []
    for version in range(4):
        contents.append(f"%PDF invoice, revision {version}".encode())
        invoice.write_bytes(contents[-1])
        taken.append(snap(place))
    snap(place)  # unchanged: no new version
    path = "2024/12/01/invoice INV-0001.pdf"
    history = restore.history(place["storage"], "files", place["identities"], path)
    assert [v.first_snapshot for v in history] == [s.id for s in taken]
    assert [v.size for v in history] == [len(c) for c in contents]
    for version, snapshot in enumerate(taken):
        target = place["tmp"] / f"v{version}"
        chosen = snapshots.choose(place["storage"], "files", as_of=snapshot.finished_at)
        assert chosen.id == snapshot.id
        restore.restore(place["storage"], chosen, place["identities"], target, prefix=path)
        assert (target / path).read_bytes() == contents[version]
        assert [p.name for p in target.rglob("*") if p.is_file()] == [invoice.name]


def test_an_existing_file_is_overwritten_only_when_asked(place: dict[str, Any]) -> None:
    taken = snap(place)
    target = place["tmp"] / "live"
    target.mkdir()
    (target / "empty.txt").write_text("newer work, not in the snapshot")
    with pytest.raises(PermanentError, match="1 files already exist .*--overwrite"):
        restore.restore(place["storage"], taken, place["identities"], target)
    assert (target / "empty.txt").read_text() == "newer work, not in the snapshot"
    assert [p.name for p in target.iterdir()] == ["empty.txt"]  # nothing else was written either
    restore.restore(place["storage"], taken, place["identities"], target, overwrite=True)
    assert (target / "empty.txt").read_bytes() == b""


def test_a_target_without_space_fails_before_writing(place: dict[str, Any]) -> None:
    taken = snap(place)
    with tiny_filesystem(place["tmp"] / "small", "1m") as small:
        with pytest.raises(PermanentError, match="bytes free, the files need"):
            restore.restore(place["storage"], taken, place["identities"], small)
        assert list(small.iterdir()) == []


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_damaged_blob_fails_the_restore_clearly_and_leaves_no_part_file(place: dict[str, Any], damage: str) -> None:
    taken = snap(place)
    node = next(n for n in snapshots.read_index(place["storage"], taken, place["identities"]) if n.path == "script.sh")
    assert node.blob is not None
    stored = Path(place["storage"].root) / node.blob
    if damage == "missing":
        stored.unlink()
    else:
        data = bytearray(stored.read_bytes())
        data[-20] ^= 0xFF
        stored.write_bytes(bytes(data))
    target = place["tmp"] / "out"
    error = NotFoundError if damage == "missing" else CheckFailed
    with pytest.raises(error, match=node.blob.split("/")[-1][:16]):
        restore.restore(place["storage"], taken, place["identities"], target, prefix="script.sh")
    assert list(target.rglob("*")) == []


def test_files_that_vanish_during_a_snapshot_are_reported_and_the_rest_is_taken(place: dict[str, Any]) -> None:
    churn = place["uploads"] / "tmp-churn"
    churn.mkdir()
    names = [f"part-{i:04d}" for i in range(1500)]
    for name in names:
        (churn / name).write_bytes(name.encode() * 50)
    content = hashlib.sha256(names[0].encode() * 50).hexdigest()
    first_blob = place["tmp"] / "storage" / BlobStore(place["storage"], "files/blobs", place["recipients"]).key(content)
    stop = threading.Event()

    def delete_once_the_first_part_is_stored() -> None:  # the snapshot is then inside tmp-churn
        while not first_blob.exists() and not stop.wait(0.001):
            pass
        for name in reversed(names):
            (churn / name).unlink()

    deleter = threading.Thread(target=delete_once_the_first_part_is_stored)
    deleter.start()
    try:
        taken = snap(place)
    finally:
        stop.set()
        deleter.join()
    vanished = [s.path for s in taken.skipped if s.reason == "vanished during the snapshot"]
    names_in = {n.path for n in snapshots.read_index(place["storage"], taken, place["identities"])}
    assert vanished and len(vanished) + len([n for n in names_in if "part-" in n]) == len(names)
    assert {"big.bin", "empty.txt", "script.sh", "2024/12/01/invoice INV-0001.pdf"} <= names_in


def as_user(uid: int, gid: int, work: Any) -> str:
    """Run `work()` in a forked child with the given uid (this interpreter may not be executable by it)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, do the work, send its result back
        code = 1
        try:
            os.close(reader)
            os.setgid(gid)
            os.setuid(uid)
            os.write(writer, work().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as result:
        text = result.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return text


def test_unreadable_files_are_reported_and_the_rest_is_taken(age_key: tuple[Path, str]) -> None:
    """Root reads every file, so as root the snapshot runs as the unprivileged postgres user."""
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="sppg-unreadable-"))
    try:
        uploads = make_uploads(base / "uploads")
        (uploads / "private").mkdir()
        (uploads / "private" / "salary.xlsx").write_bytes(b"nobody may read this")
        if user:
            for path in [base, *base.rglob("*")]:
                os.lchown(path, user.pw_uid, user.pw_gid)
        (uploads / "private" / "salary.xlsx").chmod(0o000)
        (uploads / "locked folder").mkdir(mode=0o000)

        def work() -> str:
            storage = open_storage((base / "storage").as_uri())
            snap_id = snapshots.reserve_id(storage, "files", datetime.now(UTC))
            source = [snapshots.Source(uploads, "")]
            taken = snapshots.take(storage, "files", source, [age_key[1]], base / "state", snap_id)
            return taken.model_dump_json() if taken else ""

        output = as_user(user.pw_uid, user.pw_gid, work) if user else work()
        taken = snapshots.Snapshot.model_validate_json(output)
        assert {s.path: s.reason for s in taken.skipped} == {
            "locked folder": "cannot list: Permission denied",
            "private/salary.xlsx": "cannot read: Permission denied",
        }
        assert taken.files == 5
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_file_comes_back_by_hand_with_age_and_zstd(place: dict[str, Any], age_key: tuple[Path, str]) -> None:
    """The README's commands: decrypt the index, find the file's blob, decrypt and decompress it."""
    taken = snap(place)
    root = Path(place["storage"].root)
    key = str(age_key[0])
    index = subprocess.run(
        f"age -d -i {key} '{root / taken.index_key}' | zstd -d", shell=True, capture_output=True, check=True
    ).stdout.decode()
    [line] = [line for line in index.splitlines() if '"path":"script.sh"' in line]
    blob = json.loads(line)["blob"]
    out = place["tmp"] / "by-hand"
    subprocess.run(f"age -d -i {key} '{root / blob}' | zstd -d > '{out}'", shell=True, check=True)
    assert out.read_bytes() == (place["uploads"] / "script.sh").read_bytes()
    assert hashlib.sha256(out.read_bytes()).hexdigest() in blob


def test_snapshots_work_the_same_on_cloud_storage(
    place: dict[str, Any], gcs_bucket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    place["storage"] = open_storage(gcs_bucket_url)
    first = snap(place)
    (place["uploads"] / "script.sh").write_text("#!/bin/sh\necho v2\n")
    second = snap(place)
    assert (first.uploaded_blobs, second.uploaded_blobs) == (5, 1)
    target = place["tmp"] / "from-gcs"
    restore.restore(place["storage"], second, place["identities"], target)
    assert file_tree(target) == file_tree(place["uploads"])


def test_a_symlink_in_the_target_cannot_lead_the_restore_outside_it(place: dict[str, Any]) -> None:
    taken = snap(place)
    target, elsewhere = place["tmp"] / "target", place["tmp"] / "elsewhere"
    target.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, target / "2024")
    before = elsewhere.stat()
    path = "2024/12/01/invoice INV-0001.pdf"
    with pytest.raises(PermanentError, match="leads outside"):  # only the file is restored: its folders are not
        restore.restore(place["storage"], taken, place["identities"], target, prefix=path, overwrite=True)
    with pytest.raises(PermanentError, match="already exist"):
        restore.restore(place["storage"], taken, place["identities"], target)
    restore.restore(place["storage"], taken, place["identities"], target, overwrite=True)
    assert not (target / "2024").is_symlink() and (target / path).is_file()  # the link became the folder
    assert list(elsewhere.iterdir()) == [] and elsewhere.stat().st_mode == before.st_mode


def test_a_restore_that_ran_before_is_not_refused_for_its_own_files(place: dict[str, Any]) -> None:
    """A retried restore finds the files its first attempt wrote: identical ones are not in the way."""
    taken = snap(place)
    target = place["tmp"] / "retried"
    restore.restore(place["storage"], taken, place["identities"], target, prefix="2024")
    result = restore.restore(place["storage"], taken, place["identities"], target)
    assert file_tree(target) == file_tree(place["uploads"]) and (result.files, result.already_there) == (4, 1)


def test_a_file_unreadable_for_a_while_keeps_its_previous_version(age_key: tuple[Path, str]) -> None:
    """Unreadable in one snapshot is not deleted: the snapshot keeps its last good version and says so."""
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="sppg-carry-"))
    try:
        uploads = make_uploads(base / "uploads")
        if user:
            for path in [base, *base.rglob("*")]:
                os.lchown(path, user.pw_uid, user.pw_gid)
        salary = uploads / "script.sh"

        def work() -> str:
            storage = open_storage((base / "storage").as_uri())
            taken = []
            for mode in (0o644, 0o000):
                salary.chmod(mode)
                snap_id = snapshots.reserve_id(storage, "files", datetime.now(UTC) + timedelta(seconds=len(taken)))
                source = [snapshots.Source(uploads, "")]
                taken.append(snapshots.take(storage, "files", source, [age_key[1]], base / "state", snap_id))
            return json.dumps([t.model_dump(mode="json") for t in taken if t])

        first, second = json.loads(as_user(user.pw_uid, user.pw_gid, work) if user else work())
        assert second["skipped"] == [
            {"path": "script.sh", "reason": "cannot read: Permission denied; its previous version is kept"}
        ]
        storage = open_storage((base / "storage").as_uri())
        history = restore.history(storage, "files", crypto.load_identities(age_key[0]), "script.sh")
        assert len(history) == 1 and history[0].last_snapshot == second["id"] and history[0].gone_in is None
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_config_paths_the_app_folder_itself_a_linked_env_and_a_skipped_file(
    tmp_path: Path, age_key: tuple[Path, str]
) -> None:
    app, etc = tmp_path / "opt" / "erp-sppg", tmp_path / "etc" / "erp"
    (app / "nginx").mkdir(parents=True)
    etc.mkdir(parents=True)
    (etc / "env").write_text("JWT_SECRET=rahasia\n")
    os.symlink(etc / "env", app / ".env")
    (app / "nginx" / "erp.conf").write_text("server {}\n")
    os.mkfifo(app / "control.fifo")  # not a file: skipped, every run
    storage = open_storage((tmp_path / "storage").as_uri())
    sources = snapshots.config_sources([str(app), str(app / ".env")], app)

    def take() -> snapshots.Snapshot | None:
        snap_id = snapshots.reserve_id(storage, "config", datetime.now(UTC))
        return snapshots.take(storage, "config", sources, [age_key[1]], tmp_path / "s", snap_id, only_if_changed=True)

    first = take()
    assert first is not None and [s.path for s in first.skipped] == ["control.fifo"]
    names = [n.path for n in snapshots.read_index(storage, first, crypto.load_identities(age_key[0]))]
    assert len(names) == len(set(names)) and ".env" in names
    assert take() is None  # the same skipped file is no reason for a new snapshot every 10 minutes
    target = tmp_path / "restored"
    restore.restore(storage, first, crypto.load_identities(age_key[0]), target)
    assert (target / "nginx" / "erp.conf").read_text() == "server {}\n"
    assert os.readlink(target / ".env") == str(etc / "env")
    assert (target / etc.relative_to("/") / "env").read_text() == "JWT_SECRET=rahasia\n"  # what the link points to


def test_an_empty_uploads_folder_is_refused_when_the_last_snapshot_had_files(place: dict[str, Any]) -> None:
    """An unmounted volume must not become the newest snapshot, the one a restore picks by default."""
    first = snap(place)
    for path in sorted(place["uploads"].rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
    for state in (True, False):  # with the local cache, and on a new machine without it
        if not state:
            shutil.rmtree(place["state"])
        with pytest.raises(PermanentError, match=f"holds no files, but the last files snapshot had {first.files}"):
            snap(place)
    assert [s.id for s in snapshots.list_snapshots(place["storage"], "files").snapshots] == [first.id]


def test_a_target_that_is_a_file_is_one_clear_error(place: dict[str, Any]) -> None:
    taken = snap(place)
    not_a_folder = place["tmp"] / "a-file"
    not_a_folder.write_text("x")
    with pytest.raises(PermanentError, match="is a file, not a folder"):
        restore.restore(place["storage"], taken, place["identities"], not_a_folder)


def test_a_whole_snapshot_comes_back_by_hand(place: dict[str, Any], age_key: tuple[Path, str]) -> None:
    """The README's loop over the index: every regular file back with age, zstd and jq."""
    taken = snap(place)
    root = Path(place["storage"].root)
    out = place["tmp"] / "out"
    script = (
        f"age -d -i {age_key[0]} {taken.index_key} | zstd -d | "
        """jq -r 'select(.type=="file") | [.blob, .path] | @tsv' | """
        f"""while IFS=$'\\t' read -r blob path; do mkdir -p "{out}/$(dirname "$path")"; """
        f"""age -d -i {age_key[0]} "$blob" | zstd -d > "{out}/$path"; done"""
    )
    subprocess.run(["bash", "-c", script], cwd=root, check=True)
    for node in snapshots.read_index(place["storage"], taken, place["identities"]):
        if node.type == "file":
            assert (out / node.path).read_bytes() == (place["uploads"] / node.path).read_bytes()


def test_setuid_bits_from_storage_are_dropped_unless_asked_for(place: dict[str, Any]) -> None:
    (place["uploads"] / "tool").write_bytes(b"#!/bin/sh\n")
    (place["uploads"] / "tool").chmod(0o4755)
    (place["uploads"] / "2024").chmod(0o2775)
    taken = snap(place)
    target = place["tmp"] / "restored"
    restore.restore(place["storage"], taken, place["identities"], target)
    assert stat.S_IMODE((target / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "2024").stat().st_mode) == 0o2775  # a folder's setgid only shares its group
    again = place["tmp"] / "asked"
    restore.restore(place["storage"], taken, place["identities"], again, keep_setid=True)
    assert stat.S_IMODE((again / "tool").stat().st_mode) == 0o4755
