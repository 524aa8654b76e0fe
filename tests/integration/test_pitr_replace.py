"""`restore pitr --replace`: the recovered data put in place of a database that runs in a Docker container, on a
real Docker engine. The container runs the host's real PostgreSQL binaries (bound read-only: no image registry
here) as its own user (uid 999), with its data in a named volume, as the stock postgres image does."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sppg_backup.sandbox.clusters import default_bin_dir, free_port
from tests.conftest import DockerEngine
from tests.helpers import cli, error_lines, moment_between
from tests.integration.test_wal_receiver import INTERVAL, base_backup, receiver

pytestmark = pytest.mark.integration
IMAGE = "pg-like:test"
PGDATA = "/var/lib/postgresql/data"
CHECK = {"name": "invoices", "sql": "SELECT count(*) >= 0 FROM invoices", "expect": "true"}


def make_image(engine: DockerEngine) -> None:
    """busybox, a postgres user (uid 999) owning PGDATA, /usr from the host (PostgreSQL and its libraries)."""
    rootfs = Path(tempfile.mkdtemp(prefix="sppg-pg-image-"))
    for folder in ("bin", "etc", "tmp", "usr", PGDATA.lstrip("/")):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "lib").symlink_to("usr/lib")
    (rootfs / "lib64").symlink_to("usr/lib64")
    (rootfs / "etc" / "passwd").write_text("postgres:x:999:999::/var/lib/postgresql:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("postgres:x:999:\n")
    (rootfs / "tmp").chmod(0o1777)
    for path in (rootfs / "var/lib/postgresql", rootfs / PGDATA.lstrip("/")):
        os.chown(path, 999, 999)
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True).stdout
    subprocess.run(
        ["docker", "-H", engine.host, "import", "-c", f"ENV PGDATA={PGDATA}", "-", IMAGE],
        input=tar,
        capture_output=True,
        check=True,
    )
    shutil.rmtree(rootfs)


class ContainerDatabase:
    """The ERP's database: a container `erp-db` on the host network, its data in the volume `erp-pgdata`."""

    def __init__(self, engine: DockerEngine) -> None:
        self.engine, self.port, self.password = engine, free_port(), secrets.token_hex(8)
        self.volume = f"erp-pgdata-{self.port}"
        bin_dir = default_bin_dir()
        self.mounts = {"/usr": {"bind": "/usr", "mode": "ro"}, self.volume: {"bind": PGDATA, "mode": "rw"}}
        init = (
            f"echo {self.password} > /tmp/pw && {bin_dir}/initdb -D {PGDATA} -U postgres --pwfile=/tmp/pw "
            "--auth-local=trust --auth-host=scram-sha-256 -E UTF8 > /tmp/out 2>&1 || { cat /tmp/out; exit 1; }"
        )
        engine.client.containers.run(IMAGE, ["sh", "-c", init], user="999:999", volumes=self.mounts, remove=True)
        command = [str(bin_dir / "postgres"), "-D", PGDATA, "-p", str(self.port)]
        command += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=/tmp", "-c", "fsync=off"]
        self.container = engine.client.containers.run(
            IMAGE, command, name="erp-db", user="999:999", volumes=self.mounts, network_mode="host", detach=True
        )
        self.wait()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def wait(self) -> None:
        for _ in range(150):
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise AssertionError(f"the container's server does not start: {self.container.logs()[-2000:]!r}")

    def rows(self) -> list[Any]:
        with psycopg.connect(self.url("erp_sppg")) as conn:
            return conn.execute("SELECT id, note FROM invoices ORDER BY id").fetchall()

    def volumes(self) -> set[str]:
        return {v.name for v in self.engine.client.volumes.list() if v.name.startswith(self.volume)}

    def remove(self) -> None:
        self.container.remove(force=True)
        for name in self.volumes():
            self.engine.client.volumes.get(name).remove(force=True)


@pytest.fixture
def database(docker_host: DockerEngine) -> Iterator[ContainerDatabase]:
    docker_host.root.chmod(0o711)  # as /var/lib above a real data root: the staging server passes through
    if IMAGE not in {tag for image in docker_host.client.images.list() for tag in image.tags}:
        make_image(docker_host)
    db = ContainerDatabase(docker_host)
    yield db
    db.remove()


@pytest.fixture
def day(
    database: ContainerDatabase,
    docker_host: DockerEngine,
    backup_env: dict[str, str],
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """A base backup of the container's database, an invoice, the second after it, the DELETE (the mistake);
    the receiver ran throughout and has stopped."""
    settings = {
        "DATABASE_URL": database.url("erp_sppg"),
        "WAL_DIR": str(tmp_path / "spool"),
        "WAL_UPLOAD_INTERVAL_SECONDS": str(INTERVAL),
        "PITR": "true",
        "STATE_DIR": tempfile.mkdtemp(prefix="sppg-state-"),  # the postgres user must pass through its parents
        "DB_CONTAINER": "erp-db",
        "SERVICES": "backend",
        "DRILL_CHECKS": json.dumps(
            [{"name": "invoices", "sql": "SELECT count(*) >= 0 FROM invoices", "expect": "true"}]
        ),
    }
    for name, value in settings.items():
        monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    docker_host.run("backend")
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE erp_sppg")
    with psycopg.connect(database.url("erp_sppg"), autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, note text)")
    running = receiver(prefect_api)
    try:
        wait_connected(database)
        base_id = base_backup(prefect_api)
        with psycopg.connect(database.url("erp_sppg"), autocommit=True) as conn:
            before = moment_between(conn, "INSERT INTO invoices VALUES (1, 'kept')", "DELETE FROM invoices")
        time.sleep(3 * INTERVAL)
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(30)
    return {"base_id": base_id, "before": before.isoformat(), "audit": Path(backup_env["AUDIT_LOG"])}


def wait_connected(database: ContainerDatabase) -> None:
    with psycopg.connect(database.url(), autocommit=True) as conn:
        for _ in range(100):
            if conn.execute("SELECT 1 FROM pg_stat_replication WHERE application_name = 'pg_receivewal'").fetchone():
                return
            time.sleep(0.1)
    raise AssertionError("the receiver did not connect")


def running(engine: DockerEngine, name: str) -> bool:
    container = engine.client.containers.get(name)
    container.reload()
    return bool(container.status == "running")


def test_replace_puts_the_second_before_the_mistake_in_the_container_and_keeps_the_old_data(
    day: dict[str, Any], database: ContainerDatabase, docker_host: DockerEngine, prefect_api: str
) -> None:
    owner = {"host": socket.gethostname(), "pid": str(2**22 + 1), "process_start": "0"}  # a run killed long ago
    labels = {"sppg-backup.pitr": "incoming", **{f"sppg-backup.pitr.{k}": v for k, v in owner.items()}}
    docker_host.client.volumes.create(name=f"{database.volume}-pitr-20260101_000000", labels=labels)
    refused = cli("restore", "pitr", "--to", day["before"], "--replace", api=prefect_api)
    assert refused.returncode == 1
    [line] = error_lines(refused.stderr)
    assert "--yes" in line and "erp-db" in line
    assert running(docker_host, "erp-db") and database.rows() == []
    assert database.volumes() == {database.volume}  # nothing made; what the killed run left is gone

    done = cli("restore", "pitr", "--to", day["before"], "--replace", "--yes", "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert database.rows() == [(1, "kept")]  # in the container, on its own port and volume
    assert running(docker_host, "erp-db") and running(docker_host, "backend")
    assert result["replaced"] == "erp-db" and result["base_backup_id"] == day["base_id"]
    [kept] = database.volumes() - {database.volume}  # the old data, kept; the staging volume is gone
    assert kept.startswith(f"{database.volume}-before-pitr-") and kept in result["kept"]
    old = Path(docker_host.client.volumes.get(kept).attrs["Mountpoint"])
    assert (old / "PG_VERSION").is_file() and (old / "base").is_dir()
    data = Path(docker_host.client.volumes.get(database.volume).attrs["Mountpoint"])
    assert data.stat().st_uid == 999 and (data / "base").stat().st_uid == 999
    assert "sppg-backup" not in (data / "postgresql.auto.conf").read_text()  # the staging server's settings gone
    audited = [json.loads(line) for line in day["audit"].read_text().splitlines()]
    assert [e["result"] for e in audited if e["action"] == "pitr.replace"] == ["started", "ok"]


def test_a_replaced_database_failing_its_check_gets_its_old_data_back(
    day: dict[str, Any], database: ContainerDatabase, docker_host: DockerEngine, prefect_api: str, monkeypatch: Any
) -> None:
    # a check the staging server passes and the container's server (its own port) fails
    check = {"name": "not the container", "sql": f"SELECT inet_server_port() <> {database.port}", "expect": "true"}
    monkeypatch.setenv("SPPG_BACKUP_DRILL_CHECKS", json.dumps([check]))
    done = cli("restore", "pitr", "--latest", "--replace", "--yes", api=prefect_api)
    assert done.returncode == 1
    [line] = error_lines(done.stderr)
    assert "not the container" in line
    assert database.rows() == []  # the database as it was, running on its own data again
    assert running(docker_host, "erp-db") and running(docker_host, "backend")
    assert database.volumes() == {database.volume}  # the staging and the emptied kept volume are gone
    audited = [json.loads(line) for line in day["audit"].read_text().splitlines()]
    assert [e["result"] for e in audited if e["action"] == "pitr.replace"] == ["started", "rolled back"]
