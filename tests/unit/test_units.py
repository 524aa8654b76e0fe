"""The service files shipped under deployments/ run commands that exist, the way they are written."""

import configparser
import os
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


def test_the_compose_topology_is_valid_and_matches_the_units(tmp_path: Path) -> None:
    """deployments/compose.yaml as `docker-compose config` reads it (no image is pulled): the server on its own
    PostgreSQL with leases in files, the deploy step, a worker on the database queue."""
    import yaml

    (tmp_path / "prefect.env").write_text("PREFECT_DB_PASSWORD=pw-of-the-test\n")
    (tmp_path / "sppg-backup.env").write_text("SPPG_BACKUP_DATABASE_URL=postgresql://backup@db/erp_sppg\n")
    env = {**os.environ, "SPPG_BACKUP_ENV_FILE": str(tmp_path / "sppg-backup.env")}
    compose = [
        "docker-compose",
        "--env-file",
        str(tmp_path / "prefect.env"),
        "-f",
        str(ROOT / "deployments" / "compose.yaml"),
    ]
    done = subprocess.run([*compose, "config"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    server = services["prefect-server"]["environment"]
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://prefect:pw-of-the-test@prefect-db:5432/prefect"
    )
    assert server["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"].endswith("lease_storage.filesystem")
    assert services["prefect-db"]["environment"]["POSTGRES_PASSWORD"] == "pw-of-the-test"
    assert services["deploy"]["command"] == ["deployments", "--apply"]  # pool, prefect deploy, automations
    worker = services["worker-database"]
    assert worker["environment"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "60"  # within the automation's 300 s
    assert worker["command"][:5] == ["worker", "start", "--pool", "sppg-backup", "--work-queue"]
    assert worker["command"][5] == "database" and worker["environment"]["SPPG_BACKUP_DATABASE_URL"].startswith(
        "postgresql"
    )
    missing = subprocess.run([*compose[:1], "-f", compose[-1], "config", "-q"], capture_output=True, text=True, env=env)
    assert missing.returncode != 0 and "set PREFECT_DB_PASSWORD" in missing.stderr  # no default password
