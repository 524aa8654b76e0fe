import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sppg_backup.ops import scratch


def age(folder: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(folder, (then, then))


def test_a_run_folder_is_private_and_removed_after_success(tmp_path: Path) -> None:
    with scratch.run_folder(tmp_path / "scratch", "run-1") as folder:
        (folder / "dump").write_bytes(b"decrypted")
        assert folder.stat().st_mode & 0o777 == 0o700
    assert not folder.exists()


def test_after_a_failure_the_folder_stays_for_the_retry_only_when_asked(tmp_path: Path) -> None:
    for keep in (True, False):
        with pytest.raises(OSError), scratch.run_folder(tmp_path, f"run-{keep}", keep_on_failure=keep) as folder:
            (folder / "dump").write_bytes(b"x")
            raise OSError("disk full")
        assert (folder / "dump").exists() is keep
    with scratch.run_folder(tmp_path, "run-True") as again:  # the retried run finds its file
        assert (again / "dump").read_bytes() == b"x"


def test_a_later_run_removes_what_a_killed_or_failed_run_left_but_not_a_live_ones(tmp_path: Path) -> None:
    live = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sppg_backup.ops import scratch\n"
            f"with scratch.run_folder(Path({str(tmp_path)!r}), 'live'):\n"
            "    print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout and live.stdout.readline().strip() == "ready"
        killed = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os; from pathlib import Path; from sppg_backup.ops import scratch\n"
                f"with scratch.run_folder(Path({str(tmp_path)!r}), 'killed') as f:\n"
                "    (f / 'dump').write_bytes(b'secret'); os._exit(9)",
            ]
        )
        assert killed.returncode == 9 and (tmp_path / "killed" / "dump").exists()
        for name in ("live", "killed"):
            age(tmp_path / name, 120)
        (tmp_path / "new").mkdir()  # a run that has not taken its lock yet
        with scratch.run_folder(tmp_path, "later"):
            assert sorted(p.name for p in tmp_path.iterdir()) == ["later", "live", "new"]
    finally:
        live.kill()
        live.wait()


def test_a_sealed_file_is_reused_only_while_it_is_whole(tmp_path: Path) -> None:
    dump = tmp_path / "backup.dump"
    dump.write_bytes(b"PGDMP" + b"x" * 1000)
    assert not scratch.is_sealed(dump)
    scratch.seal(dump)
    assert scratch.is_sealed(dump)
    with open(dump, "r+b") as f:
        f.seek(100)
        f.write(b"y")
    assert not scratch.is_sealed(dump)
    dump.unlink()
    assert not scratch.is_sealed(dump)


def test_a_retried_run_keeps_its_own_folder_and_removes_the_others(tmp_path: Path) -> None:
    for name in ("run-a-restore-database", "run-b-restore-database"):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1, 1))  # long ago
    removed = scratch.clean_abandoned(tmp_path, spare="run-a")
    assert removed == [tmp_path / "run-b-restore-database"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-a-restore-database"]
