"""The application tar of the full-system backup: valid whatever the folder holds, modes kept on restore."""

from __future__ import annotations

import io
import os
import socket
import subprocess
from pathlib import Path

import pytest

from sppg_backup.full import system
from sppg_backup.storage import open_storage
from sppg_backup.stream import crypto
from tests.helpers import file_tree

pytestmark = pytest.mark.integration


def test_sockets_are_left_out_and_modes_come_back_exactly(tmp_path: Path, age_key: tuple[Path, str]) -> None:
    app = tmp_path / "app"
    (app / "shared").mkdir(parents=True)
    (app / "shared").chmod(0o2775)
    (app / "shared" / "group-writable.txt").write_text("x")
    (app / "shared" / "group-writable.txt").chmod(0o664)
    (app / "run.sh").write_text("#!/bin/sh\n")
    (app / "run.sh").chmod(0o775)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(app / "app.sock"))
    storage = open_storage((tmp_path / "storage").as_uri())
    try:
        part = system.backup_application(storage, "erp_sppg_full_x", app, [age_key[1]])
    finally:
        listener.close()
    assert part.skipped == ["app.sock: not a regular file, folder or link; left out"]
    os.unlink(app / "app.sock")
    stored = system.fetch(storage, part, tmp_path / "application.tar.zst.age")
    target = tmp_path / "restored"
    system.extract_application(stored, crypto.load_identities(age_key[0]), target)
    assert file_tree(target) == file_tree(app)


def test_a_file_that_shrinks_while_read_keeps_the_archive_valid() -> None:
    reader = system._Exactly(io.BytesIO(b"only five"), 20)  # the file was 20 bytes when listed
    data = b"".join(iter(lambda: reader.read(7), b""))
    assert data == b"only five" + b"\0" * 11 and "shrank" in (reader.problem or "")


def test_the_application_tar_comes_back_by_hand(tmp_path: Path, age_key: tuple[Path, str]) -> None:
    """The README's command: age -d | zstd -d | tar -x gives the same folder."""
    app = tmp_path / "app"
    (app / "nginx").mkdir(parents=True)
    (app / "nginx" / "erp.conf").write_text("server {}\n")
    (app / "lampiran ü.pdf").write_bytes(os.urandom(5000))
    os.symlink("nginx/erp.conf", app / "current.conf")
    storage = open_storage((tmp_path / "storage").as_uri())
    part = system.backup_application(storage, "erp_sppg_full_x", app, [age_key[1]])
    assert part.key is not None
    stored = tmp_path / "storage" / part.key
    target = tmp_path / "by-hand"
    target.mkdir()
    subprocess.run(f"age -d -i {age_key[0]} '{stored}' | zstd -d | tar -x -C '{target}'", shell=True, check=True)
    assert file_tree(target) == file_tree(app)
