"""Session-scoped real services: PostgreSQL cluster, GCS emulator, Prefect server."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.sandbox.clusters import wait_for
from tests.helpers import free_port


@contextlib.contextmanager
def emulator() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A gcp-storage-emulator process on loopback (with GCS's create-if-absent precondition): its URL, itself."""
    port = free_port()
    emulator = [sys.executable, "-m", "tests.gcs_emulator", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*emulator, "--in-memory"],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/storage/v1/b?project=x", proc)
    except RuntimeError:
        proc.kill()
        raise
    try:
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The session's GCS emulator; sets STORAGE_EMULATOR_HOST for the session."""
    with emulator() as (url, _):
        old = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = url
        yield url
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


@pytest.fixture
def gcs_bucket_url(gcs_emulator: str) -> str:
    """A fresh, empty bucket in the emulator, as gs://bucket/prefix."""
    from sppg_backup.storage.gcs import make_client

    name = "test-" + uuid.uuid4().hex[:12]
    make_client().create_bucket(name)
    return f"gs://{name}/backups"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL server (initdb on a free port) for the whole session."""
    from sppg_backup.sandbox.clusters import Cluster

    cluster = Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def erp_database(postgres_cluster: Any) -> str:
    """The sample ERP database (about 2 MB); tests must not change it. Returns its URL."""
    from sppg_backup.sandbox.clusters import fill_sample

    url = postgres_cluster.create_database("erp_sppg")
    fill_sample(url, scale=1)
    return str(url)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the session (SQLite); flows called in tests report to it."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield str(PREFECT_API_URL.value())


class Webhook:
    """A real HTTP receiver on loopback, standing in for Slack (apprise json:// posts) or a Pushgateway."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, bytes]] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        messages, requests = self.messages, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                requests.append((self.command, self.path, body))
                if self.path == "/hook":
                    messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            do_PUT = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture(scope="session")
def webhook_server() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def webhook(webhook_server: Webhook) -> Webhook:
    webhook_server.messages.clear()
    webhook_server.requests.clear()
    return webhook_server


@pytest.fixture(scope="session")
def age_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A private key file and its public key, made like age-keygen does."""
    from sppg_backup.stream.crypto import generate_key_file

    path = tmp_path_factory.mktemp("keys") / "key.txt"
    return path, generate_key_file(path)


@pytest.fixture
def backup_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, erp_database: str, age_key: tuple[Path, str], webhook: Webhook
) -> dict[str, str]:
    """SPPG_BACKUP_* for a backup of the sample database to file:// storage, with a local copy."""
    env = {
        "DATABASE_URL": erp_database,
        "STORAGE_URL": (tmp_path / "storage").as_uri(),
        "LOCAL_DIR": str(tmp_path / "local"),
        "AGE_RECIPIENTS": age_key[1],
        "AGE_IDENTITY_FILE": str(age_key[0]),
        "NOTIFY_URLS": webhook.url,
        "METRICS_FILE": str(tmp_path / "metrics" / "backup.prom"),
        "AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "MIN_BACKUP_SIZE": "10000",
        "SERVICE_STOP_TIMEOUT_SECONDS": "1",
        "RETRIES": "2",
        "RETRY_DELAY_SECONDS": "0",
        "STATE_DIR": str(tmp_path / "state"),
        "SCHEDULED_FLOWS": "",  # the test harness server has no deployments; tests/e2e checks the schedules
    }
    for name in list(os.environ):
        if name.startswith("SPPG_BACKUP_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    return env


class Mailbox:
    """A real SMTP server (aiosmtpd) on loopback; apprise mailto:// messages land in `messages`."""

    def __init__(self) -> None:
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=backup@sppg.example.id&to=ops@sppg.example.id&mode=insecure"

    def texts(self) -> list[tuple[str, str]]:
        """(subject, plain-text body) of every message received."""
        return [(m["subject"], m.get_body(preferencelist=("plain", "html")).get_content()) for m in self.messages]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.controller.stop()


@pytest.fixture
def mailbox(smtp_server: Mailbox) -> Mailbox:
    smtp_server.messages.clear()
    return smtp_server


@pytest.fixture
def fresh_backup(backup_env: dict[str, str], webhook: Webhook, prefect_api: str) -> dict[str, Any]:
    """One good backup of the sample database (the flow's result), notifications of it cleared."""
    from sppg_backup.flows.backup_database import backup_database

    manifest: dict[str, Any] = backup_database()
    webhook.messages.clear()
    webhook.requests.clear()
    return manifest


class DockerEngine:
    """A private dockerd (own data root and socket; no network bridge) with a busybox test image."""

    IMAGE = "erp-sppg-backend:test"

    def __init__(self, with_image: bool = True) -> None:
        import shutil
        import tempfile

        if shutil.which("dockerd") is None:
            raise RuntimeError("dockerd not installed: run scripts/setup.sh (docker.io, busybox-static)")
        self.root = Path(tempfile.mkdtemp(prefix="sppg-docker-"))
        self.host = f"unix://{self.root}/docker.sock"
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "-H",
                self.host,
                "--pidfile",
                str(self.root / "docker.pid"),
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "dockerd.log", "wb"),  # noqa: SIM115
        )
        import docker

        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = docker.DockerClient(base_url=self.host)
                self.client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.root / "dockerd.log").read_text()[-2000:]) from None
                time.sleep(0.3)
        if with_image:
            self.make_image()

    def make_image(self) -> None:
        import shutil

        rootfs = self.root / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
        for tool in ("sh", "sleep", "echo", "true"):
            (rootfs / "bin" / tool).symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True).stdout
        subprocess.run(
            ["docker", "-H", self.host, "import", "-c", 'CMD ["/bin/sleep", "3600"]', "-", self.IMAGE],
            input=tar,
            capture_output=True,
            check=True,
        )

    def run(
        self, name: str, service: str | None = None, command: list[str] | None = None, healthy: bool = False
    ) -> Any:
        labels = {"com.docker.compose.service": service} if service else {}
        health = {"test": ["CMD", "/bin/true"], "interval": 500_000_000, "start_period": 0} if healthy else None
        return self.client.containers.run(
            self.IMAGE, command, name=name, labels=labels, detach=True, network_mode="none", healthcheck=health
        )

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    engine = DockerEngine()
    yield engine
    engine.stop()


@pytest.fixture
def docker_host(docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerEngine]:
    """DOCKER_HOST set to the test engine; containers made in the test are removed afterwards."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    yield docker_engine
    for container in docker_engine.client.containers.list(all=True):
        container.remove(force=True)


# The scheduler's own loop (60 s in production) made shorter, so a test waits seconds for the runs it makes.
SCHEDULER_EVERY_10_SECONDS = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "10"}


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server` process on its own PostgreSQL server (as in production: deployments/compose.yaml),
    with the process work pool `sppg-backup`; its API URL."""
    from sppg_backup.sandbox.clusters import Cluster, prefect_database
    from sppg_backup.sandbox.clusters import prefect_server as start_server

    cluster = Cluster().start()
    home = tmp_path_factory.mktemp("prefect-home")
    with contextlib.ExitStack() as stack:
        stack.callback(cluster.stop)
        api = stack.enter_context(start_server(home, prefect_database(cluster), **SCHEDULER_EVERY_10_SECONDS))
        prefect = str(Path(sys.executable).with_name("prefect"))
        subprocess.run(
            [prefect, "work-pool", "create", "sppg-backup", "--type", "process"],
            check=True,
            env={**os.environ, "PREFECT_API_URL": api},
            capture_output=True,
        )
        yield api
