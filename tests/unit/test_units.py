"""The service files shipped under deployments/ run commands that exist, the way they are written."""

import configparser
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wal_receiver_unit_runs_wal_stream_and_stops_it_with_sigterm() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "deployments" / "sppg-backup-wal.service")
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "sppg-backup" and command[1:] == ["wal", "stream"]
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "always"
    done = subprocess.run([sys.executable, "-m", "sppg_backup", *command[1:], "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "SIGTERM" in done.stdout
