"""The guide's scenarios 2 and 3 with real parts: a server whose Compose stack (a PostgreSQL container and a web
service) is gone with its Docker engine and folders; a new host with a fresh Docker engine, the storage URL and the
key comes back from the storage (a GCS emulator), then again from the DR replica with that storage stopped.

No image registry here: the database image is a busybox rootfs whose entrypoint does what the stock postgres
image's does (initdb with POSTGRES_PASSWORD on an empty volume, then the server), with the host's PostgreSQL
bound read-only under /usr; it runs nothing of sppg-backup. The set carries it as one of DOCKER_IMAGES (in
production Compose pulls postgres:15)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyrage
import pytest

from sppg_backup.sandbox.clusters import default_bin_dir, free_port
from sppg_backup.stream.crypto import generate_key_file, load_identities
from tests.conftest import DockerEngine, emulator
from tests.helpers import cli, error_lines, file_tree, moment_between
from tests.integration.test_wal_receiver import INTERVAL, receiver

pytestmark = pytest.mark.integration
DB_IMAGE, WEB_IMAGE = "erp-postgres:dr", "erp-sppg-backend:dr"
PGDATA = "/var/lib/postgresql/data"
ENTRYPOINT = """#!/bin/sh
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\\n' "$POSTGRES_PASSWORD" > /tmp/pw
    initdb -D "$PGDATA" -U postgres --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 -E UTF8 \\
        > /tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }
    rm -f /tmp/pw
fi
exec postgres -D "$PGDATA" "$@"
"""
COMPOSE = """services:
  db:
    image: {db_image}
    user: "999:999"
    network_mode: host
    environment:
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD}}
    command: ["-p", "{db_port}", "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=/tmp"]
    volumes:
      - pgdata:{pgdata}
      - /usr:/usr:ro
  backend-1:
    image: {web_image}
    network_mode: host
    command: ["httpd", "-f", "-p", "127.0.0.1:{web_port}", "-h", "/srv/www"]
    volumes:
      - ./www:/srv/www:ro
volumes:
  pgdata:
"""


def make_images(engine: DockerEngine) -> None:
    rootfs = Path(tempfile.mkdtemp(prefix="sppg-dr-image-"))
    for folder in ("bin", "etc", "tmp", "usr", "srv", PGDATA.lstrip("/")):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    for tool in ("sh", "httpd", "sleep", "cat", "rm", "cp", "grep", "dirname", "mkdir", "ls"):  # the stock tools
        (rootfs / "bin" / tool).symlink_to("busybox")
    (rootfs / "lib").symlink_to("usr/lib")
    (rootfs / "lib64").symlink_to("usr/lib64")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\npostgres:x:999:\n")
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "docker-entrypoint.sh").write_text(ENTRYPOINT)
    (rootfs / "docker-entrypoint.sh").chmod(0o755)
    for path in (rootfs / "var/lib/postgresql", rootfs / PGDATA.lstrip("/")):
        os.chown(path, 999, 999)
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True).stdout
    changes = [f"ENV PGDATA={PGDATA}", f"ENV PATH={default_bin_dir()}:/bin", 'ENTRYPOINT ["/docker-entrypoint.sh"]']
    for image, extra in ((DB_IMAGE, changes), (WEB_IMAGE, ['CMD ["/bin/sleep", "3600"]'])):
        flags = [part for change in extra for part in ("-c", change)]
        command = ["docker", "-H", engine.host, "import", *flags, "-", image]
        subprocess.run(command, input=tar, check=True, capture_output=True)
    shutil.rmtree(rootfs)


class OldHost:
    """The server before the disaster: its folders, its Docker engine running the stack, its settings."""

    def __init__(self, root: Path, engine: DockerEngine) -> None:
        self.root, self.engine = root, engine
        self.app = root / "opt" / "erp-sppg"
        self.password = secrets.token_hex(8)
        self.db_port, self.web_port = free_port(), free_port()
        (self.app / "www").mkdir(parents=True)
        (root / "var").mkdir()
        (self.app / "nginx").mkdir()
        (self.app / "docker-compose.prod.yml").write_text(
            COMPOSE.format(
                db_image=DB_IMAGE, web_image=WEB_IMAGE, db_port=self.db_port, web_port=self.web_port, pgdata=PGDATA
            )
        )
        (self.app / ".env").write_text(f"POSTGRES_PASSWORD={self.password}\nJWT_SECRET=rahasia-{self.password}\n")
        (self.app / ".env").chmod(0o600)
        (self.app / "www" / "health.txt").write_text("ok\n")
        (self.app / "nginx" / "erp.conf").write_text("server { listen 443; }\n")
        (self.app / "uploads" / "2026").mkdir(parents=True)
        (self.app / "uploads" / "2026" / "faktur 01.pdf").write_bytes(os.urandom(100_000))

    def url(self, database: str = "erp_sppg") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.db_port}/{database}"

    def settings(self) -> dict[str, str]:
        app = self.app
        return {
            "DATABASE_URL": self.url(),
            "APP_DIR": str(app),
            "CONFIG_PATHS": f"{app}/docker-compose.prod.yml,{app}/.env,{app}/nginx",
            "DOCKER_IMAGES": f"{DB_IMAGE},{WEB_IMAGE}",
            "SERVICES": "backend-1",
            "DB_CONTAINER": "db",
            "HEALTH_URL": f"http://127.0.0.1:{self.web_port}/health.txt",
            "HEALTH_TIMEOUT_SECONDS": "30",
            "PITR": "true",
            "WAL_DIR": str(self.root / "var" / "wal"),
            "WAL_UPLOAD_INTERVAL_SECONDS": str(INTERVAL),
            "STATE_DIR": str(self.root / "var" / "state"),
            "LOCAL_DIR": str(self.root / "backups"),
            "UPLOADS_DIR": str(app / "uploads"),
            "DRILL_CHECKS": json.dumps(
                [{"name": "invoices", "sql": "SELECT count(*) > 0 FROM invoices", "expect": "true"}]
            ),
        }


def compose(app: Path, engine: DockerEngine, *args: str) -> None:
    done = subprocess.run(
        ["docker-compose", "-f", str(app / "docker-compose.prod.yml"), *args],
        cwd=app,
        env={**os.environ, "DOCKER_HOST": engine.host},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError(f"no database at {url}")


def rows(url: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, note FROM invoices ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def disaster(
    tmp_path_factory: pytest.TempPathFactory, age_key: tuple[Path, str], prefect_api: str
) -> Iterator[dict[str, Any]]:
    """The old server backed up (a full set with point-in-time recovery, the receiver streaming WAL to a GCS
    bucket, copied to a replica folder), then gone: its engine stopped, its folders deleted."""
    root = tmp_path_factory.mktemp("old-host")
    root.chmod(0o755)
    with emulator() as (gcs, gcs_process):
        old_emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = gcs
        from sppg_backup.storage.gcs import make_client

        make_client().create_bucket("erp-sppg-backups")
        key_b = tmp_path_factory.mktemp("key-b") / "key.txt"
        new_key = (key_b, generate_key_file(key_b))
        replica = tmp_path_factory.mktemp("dr-region") / "replica"
        engine = DockerEngine(with_image=False)
        env: dict[str, str] = {}
        try:
            make_images(engine)
            host = OldHost(root, engine)
            before = file_tree(host.app)
            compose(host.app, engine, "up", "-d")
            wait_for(host.url("postgres"))
            with psycopg.connect(host.url("postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE erp_sppg")
            with psycopg.connect(host.url(), autocommit=True) as conn:
                conn.execute("CREATE TABLE invoices (id int PRIMARY KEY, note text)")
                conn.execute("INSERT INTO invoices SELECT g, 'invoice ' || g FROM generate_series(1, 2000) g")
            env = {
                **{"SPPG_BACKUP_" + k: v for k, v in host.settings().items()},
                "SPPG_BACKUP_STORAGE_URL": "gs://erp-sppg-backups/backups",
                "SPPG_BACKUP_REPLICA_URLS": replica.as_uri(),
                "SPPG_BACKUP_AGE_RECIPIENTS": age_key[1],
                "SPPG_BACKUP_AGE_IDENTITY_FILE": str(age_key[0]),
                "SPPG_BACKUP_MIN_BACKUP_SIZE": "1000",
                "SPPG_BACKUP_SCHEDULED_FLOWS": "",
                "DOCKER_HOST": engine.host,
            }
            saved = {name: os.environ.get(name) for name in env}
            os.environ.update(env)
            api = prefect_api
            streaming = receiver(api)
            try:
                made = cli("backup", "full", "--json", api=api)
                assert made.returncode == 0, made.stderr
                with psycopg.connect(host.url(), autocommit=True) as conn:
                    moment = moment_between(
                        conn,
                        "INSERT INTO invoices VALUES (2001, 'after the full backup')",
                        "INSERT INTO invoices VALUES (2002, 'after the moment')",
                    )
                time.sleep(4 * INTERVAL)
            finally:
                streaming.send_signal(signal.SIGTERM)
                streaming.wait(30)
            # The yearly key rotation, after it all: from now on only key B opens the base backup, the WAL, the
            # set's parts, its dump and its configuration, in the bucket and on the replica.
            rotated = cli("rekey", "--recipients", new_key[1], "--yes", "--verify-identity", str(new_key[0]), api=api)
            assert rotated.returncode == 0, rotated.stderr
            set_id = json.loads(made.stdout)["id"]  # nothing ran `replicate`: each backup and WAL upload copied itself
        finally:
            for container in engine.client.containers.list(all=True):
                container.remove(force=True)  # the disaster: the engine, its containers and volumes are gone
            engine.stop()
            for name, value in (saved if env else {}).items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        shutil.rmtree(root)
        yield {
            "app": host.app,
            "before": before,
            "url": host.url(),
            "health": host.settings()["HEALTH_URL"],
            "moment": moment.isoformat(),
            "set_id": set_id,
            "replica": replica.as_uri(),
            "key": new_key[0],
            "old_key": age_key[0],
            "new_public": new_key[1],
            "gcs": gcs,
            "gcs_process": gcs_process,
            "root": root,
        }
        if old_emulator is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old_emulator


@pytest.fixture
def new_host(
    disaster: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_api: str
) -> Iterator[dict[str, Any]]:
    """A host with nothing of the old one: a fresh Docker engine, the old paths empty, no SPPG_BACKUP_* setting but
    where it keeps its own state and local copies (never taken from a set)."""
    for name in list(os.environ):
        if name.startswith("SPPG_BACKUP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SPPG_BACKUP_STATE_DIR", str(tmp_path / "var" / "lib" / "sppg-backup"))
    monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", str(tmp_path / "backups"))
    engine = DockerEngine(with_image=False)
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", disaster["gcs"])
    yield {"engine": engine, "config": tmp_path / "etc" / "sppg-backup" / "config.toml", "api": prefect_api}
    for container in engine.client.containers.list(all=True):
        container.remove(force=True)
    engine.stop()
    shutil.rmtree(disaster["root"], ignore_errors=True)


def recover(
    host: dict[str, Any], storage: str, key: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["recover", "server", "--storage", storage, "--identity", str(key), "--write-config", str(host["config"])]
    return cli(*args, *extra, api=host["api"], env=env)


def test_a_new_host_comes_back_from_the_bucket_and_the_key_to_the_second_before(
    disaster: dict[str, Any], new_host: dict[str, Any]
) -> None:
    bucket, engine = "gs://erp-sppg-backups/backups", new_host["engine"]
    wrong = recover(new_host, bucket, disaster["old_key"], "--yes")  # the key from before the rotation
    assert wrong.returncode == 2
    [line] = error_lines(wrong.stderr)
    assert "--identity" in line and disaster["set_id"] in line and "matching private key" in line
    planned = recover(new_host, bucket, disaster["key"], "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["set_id"] == disaster["set_id"] and plan["pitr"] is True
    assert any("point-in-time recovery" in line for line in plan["plan"])
    assert not disaster["app"].exists() and not new_host["config"].exists()  # nothing changed
    assert engine.client.containers.list(all=True) == [] and engine.client.images.list() == []

    refused = recover(new_host, bucket, disaster["key"])
    assert refused.returncode == 1 and "--yes" in error_lines(refused.stderr)[0]

    # kill -9 once the database's container is made (its volume being filled), then run again: it cleans and goes
    args = ["recover", "server", "--storage", bucket, "--identity", str(disaster["key"]), "--to", disaster["moment"]]
    args += ["--write-config", str(new_host["config"]), "--yes", "--json"]
    env = {**os.environ, "PREFECT_API_URL": new_host["api"]}
    killed = subprocess.Popen([sys.executable, "-m", "sppg_backup", *args], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not engine.client.containers.list(all=True) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.kill()
    assert killed.wait() == -signal.SIGKILL and engine.client.containers.list(all=True)
    done = recover(new_host, bucket, disaster["key"], "--to", disaster["moment"], "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert file_tree(disaster["app"]) == disaster["before"]  # files, configuration and .env exactly as they were
    assert rows(disaster["url"])[-1] == (2001, "after the full backup")  # the second before, not after
    assert len(rows(disaster["url"])) == 2001
    assert {tag for image in engine.client.images.list() for tag in image.tags} == {DB_IMAGE, WEB_IMAGE}
    running = {c.labels["com.docker.compose.service"] for c in engine.client.containers.list()}
    assert running == {"db", "backend-1"}
    with urllib.request.urlopen(disaster["health"], timeout=5) as answer:
        assert answer.read() == b"ok\n"
    assert result["health"] == 200 and result["database"]["base_backup_id"]
    assert result["rto_seconds"] > 0 and result["rpo_seconds"] > 0
    told = report(disaster["set_id"])
    assert told.startswith(f"# Server recovered from {disaster['set_id']}")
    assert "| RTO |" in told and "| RPO |" in told and "| recovered to |" in told
    assert "- [ ] Point the DNS name" in told and "- [ ] Put this server in the load balancer" in told
    data = engine.client.volumes.list()[0].attrs["Mountpoint"]
    assert not (Path(data) / ".sppg-recovery-wal").exists()
    assert "sppg-backup" not in (Path(data) / "postgresql.auto.conf").read_text()
    config = new_host["config"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert disaster["new_public"] in config.read_text()  # new backups from here on go to the rotated key
    listed = cli("--config", str(config), "list", "--kind", "full", "--json", api=new_host["api"])
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["id"] == disaster["set_id"]
    again = recover(new_host, bucket, disaster["key"], "--yes")
    assert again.returncode == 2 and "recovered onto this host already" in error_lines(again.stderr)[0]


def report(set_id: str) -> str:
    """The newest recover-server report (the run's markdown artifact in the Prefect UI) about `set_id`."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def latest() -> list[str]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["recover-server"])),
                sort=ArtifactSort.CREATED_DESC,
                limit=10,
            )
            return [str(a.data) for a in found if set_id in str(a.data)]

    return asyncio.run(latest())[0]


def made_on(engine: DockerEngine) -> set[str]:
    """The containers and volumes on the engine, each told apart from one made later under the same name."""
    volumes = {f"{v.name}@{v.attrs['CreatedAt']}" for v in engine.client.volumes.list()}
    return {c.id for c in engine.client.containers.list(all=True)} | volumes


def test_from_the_dr_replica_with_the_bucket_gone(disaster: dict[str, Any], new_host: dict[str, Any]) -> None:
    disaster["gcs_process"].terminate()  # the bucket's region is gone
    disaster["gcs_process"].wait(10)
    # after the rotation the old key opens nothing on the replica: base backup, WAL, dump, set parts, config
    old_key = load_identities(disaster["old_key"])
    encrypted = sorted(Path(disaster["replica"].removeprefix("file://")).rglob("*.age"))
    kinds = {path.relative_to(disaster["replica"].removeprefix("file://")).parts[0] for path in encrypted}
    assert {"base", "wal", "db", "full", "config"} <= kinds
    for path in encrypted:
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(path.read_bytes(), old_key)
    # This host's own setting wins over the set's: a health URL nothing answers, so the first try fails at the end.
    nobody = {"SPPG_BACKUP_HEALTH_URL": f"http://127.0.0.1:{free_port()}/", "SPPG_BACKUP_HEALTH_TIMEOUT_SECONDS": "2"}
    failed = recover(new_host, disaster["replica"], disaster["key"], "--from-dump", "--yes", env=nobody)
    assert failed.returncode == 1
    [line] = error_lines(failed.stderr)
    assert "health" in line and nobody["SPPG_BACKUP_HEALTH_URL"] in line
    assert len(rows(disaster["url"])) == 2000  # the set's dump: what was there when the set was taken
    engine = new_host["engine"]
    first_try = made_on(engine)
    assert len(first_try) == 3  # the stack it started, and the database's volume
    # The same again: files, images and database are back, so only the stack is started and checked again.
    again = recover(new_host, disaster["replica"], disaster["key"], "--from-dump", "--yes", env=nobody)
    assert again.returncode == 1 and "health" in error_lines(again.stderr)[0]
    assert made_on(engine) == first_try
    # Now to the newest WAL on the replica: another database, so what the failed tries made goes first.
    done = recover(new_host, disaster["replica"], disaster["key"], "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert file_tree(disaster["app"]) == disaster["before"]
    # every commit: the receiver copied each WAL upload to the replica as it went
    assert rows(disaster["url"])[-2:] == [(2001, "after the full backup"), (2002, "after the moment")]
    assert result["database"]["base_backup_id"] and result["health"] == 200
    made = [c.labels["com.docker.compose.service"] for c in engine.client.containers.list(all=True)]
    assert sorted(made) == ["backend-1", "db"] and len(engine.client.volumes.list()) == 1
    assert not made_on(engine) & first_try  # made again, not the failed try's
