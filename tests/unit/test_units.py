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


def test_the_compose_service_runs_wal_stream_from_the_image_the_dockerfile_builds() -> None:
    import yaml

    service = yaml.safe_load((ROOT / "deployments" / "compose.wal.yaml").read_text())["services"]["sppg-backup-wal"]
    assert service["command"] == ["wal", "stream"] and service["stop_signal"] == "SIGTERM"
    assert service["restart"] == "always" and service["environment"]["SPPG_BACKUP_WAL_DIR"].startswith("/var/lib")
    dockerfile = (ROOT / "deployments" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["sppg-backup"]' in dockerfile and "pg_receivewal" in dockerfile
    for copied in ("sppg_backup", "flows", "tasks", "prefect.yaml"):
        assert copied in dockerfile and (ROOT / copied).exists()
    done = subprocess.run([sys.executable, "-m", "sppg_backup", *service["command"], "--help"], capture_output=True)
    assert done.returncode == 0
