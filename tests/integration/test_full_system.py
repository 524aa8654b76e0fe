"""Full-system backup and recovery with a real Docker engine: same images, files and data on a fresh one."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.storage import open_storage
from tests.conftest import DockerEngine
from tests.dbcheck import drop, table_contents
from tests.helpers import cli, file_tree

pytestmark = pytest.mark.integration
WEB_IMAGE = "erp-sppg-web:test"


class Health:
    """The application's health endpoint on loopback; `status` is what it answers."""

    def __init__(self) -> None:
        self.status, self.calls = 200, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.calls += 1
                self.send_response(owner.status)
                self.end_headers()
                self.wfile.write(b'{"status": "ok"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def health() -> Iterator[Health]:
    endpoint = Health()
    yield endpoint
    endpoint.server.shutdown()


@pytest.fixture(scope="module")
def fresh_engine() -> Iterator[DockerEngine]:
    """A second Docker engine with no images: the machine after the disaster."""
    engine = DockerEngine(with_image=False)
    yield engine
    engine.stop()


@pytest.fixture
def system(
    backup_env: dict[str, str],
    docker_host: DockerEngine,
    health: Health,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    app = tmp_path / "opt" / "erp-sppg"
    (app / "nginx").mkdir(parents=True)
    (app / "docker-compose.prod.yml").write_text("services:\n  backend-1:\n    image: erp-sppg-backend:test\n")
    (app / ".env").write_text("JWT_SECRET=rahasia\n")
    (app / "nginx" / "erp.conf").write_text("server { listen 443; }\n")
    (app / "scripts").mkdir()
    (app / "scripts" / "backup.sh").write_text("#!/bin/sh\n")
    (app / "scripts" / "backup.sh").chmod(0o755)
    (app / "uploads" / "2024").mkdir(parents=True)
    (app / "uploads" / "2024" / "faktur ünï 01.pdf").write_bytes(os.urandom(200_000))
    (app / "uploads" / "empty").write_bytes(b"")
    os.symlink("uploads/2024", app / "latest")
    docker_host.client.images.get(DockerEngine.IMAGE).tag(WEB_IMAGE)
    docker_host.run("backend-1", service="backend-1")
    settings = {
        "APP_DIR": str(app),
        "CONFIG_PATHS": f"{app}/docker-compose.prod.yml,{app}/.env,{app}/nginx",
        "DOCKER_IMAGES": f"{DockerEngine.IMAGE},{WEB_IMAGE}",
        "SERVICES": "backend-1",
        "HEALTH_URL": health.url,
        "HEALTH_TIMEOUT_SECONDS": "3",
        "STATE_DIR": str(tmp_path / "state"),
        "SCRATCH_DIR": str(tmp_path / "scratch"),
    }
    for name, value in settings.items():
        monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    health.status, health.calls = 200, 0
    return {"app": app, "tmp": tmp_path, "engine": docker_host, **backup_env, **settings}


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_error(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING retrying")]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


def test_a_full_backup_restores_onto_a_fresh_engine_and_folder(
    system: dict[str, Any],
    fresh_engine: DockerEngine,
    prefect_api: str,
    postgres_cluster: Any,
    health: Health,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = ok(cli("backup", "full", "--json", api=prefect_api))
    assert {p["kind"] for p in made["parts"]} == {"database", "application", "image", "config"}
    taken = made["taken_with"]  # for a new host: the settings, every secret left out
    assert taken["app_dir"] == str(system["app"]) and taken["services"] == ["backend-1"]
    assert urlsplit(taken["database_url"]).password is None and urlsplit(system["DATABASE_URL"]).password
    assert "notify_urls" not in taken and "rahasia" not in json.dumps(taken)
    [listed] = ok(cli("list", "--kind", "full", "--json", api=prefect_api))
    assert listed["id"] == made["id"]
    images = {ref: system["engine"].client.images.get(ref).id for ref in (DockerEngine.IMAGE, WEB_IMAGE)}

    # The disaster: a new machine with an empty Docker engine, an empty folder and an empty database.
    monkeypatch.setenv("DOCKER_HOST", fresh_engine.host)
    target_app = system["tmp"] / "new-machine" / "opt" / "erp-sppg"
    target_db = postgres_cluster.url("erp_after_disaster")
    args = ("restore", "full", made["id"], "--yes", "--app-dir", str(target_app), "--target-url", target_db)
    result = ok(cli(*args, "--json", api=prefect_api))
    assert result["status"] == "restored" and result["health"] == 200 and health.calls >= 1
    assert file_tree(target_app) == file_tree(system["app"])
    assert {ref: fresh_engine.client.images.get(ref).id for ref in images} == images
    assert table_contents(target_db) == table_contents(system["DATABASE_URL"])
    drop(postgres_cluster, target_db)


def test_a_full_restore_stops_the_services_and_starts_them_again(
    system: dict[str, Any], prefect_api: str, postgres_cluster: Any
) -> None:
    made = ok(cli("backup", "full", "--json", api=prefect_api))
    container = system["engine"].client.containers.get("backend-1")
    started_before = container.attrs["State"]["StartedAt"]
    target_db = postgres_cluster.url("erp_full_again")
    ok(cli("restore", "full", "--latest", "--yes", "--app-dir", str(system["tmp"] / "again"),
           "--target-url", target_db, "--json", api=prefect_api))  # fmt: skip
    container.reload()
    assert container.status == "running" and container.attrs["State"]["StartedAt"] != started_before
    assert made["id"]
    drop(postgres_cluster, target_db)


def test_a_missing_image_fails_the_full_backup_and_lists_nothing(
    system: dict[str, Any], prefect_api: str, webhook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_DOCKER_IMAGES", f"{DockerEngine.IMAGE},erp-sppg-web:missing")
    line = one_error(cli("backup", "full", api=prefect_api))
    assert "erp-sppg-web:missing" in line and "DOCKER_IMAGES" in line
    storage = open_storage(system["STORAGE_URL"])
    assert [o.key for o in storage.list("full/")] == []  # checked before anything was stored
    assert list_backups(storage).backups == []  # not even the database was dumped
    assert [m["type"] for m in webhook.messages][-1] == "failure"


def test_a_full_restore_needs_confirmation_and_a_healthy_system(
    system: dict[str, Any], prefect_api: str, health: Health, postgres_cluster: Any
) -> None:
    ok(cli("backup", "full", "--json", api=prefect_api))
    target_app = system["tmp"] / "unconfirmed"
    line = one_error(cli("restore", "full", "--app-dir", str(target_app), api=prefect_api))
    assert "--yes" in line and not target_app.exists()
    health.status = 503
    target_db = postgres_cluster.url("erp_unhealthy")
    line = one_error(cli("restore", "full", "--yes", "--app-dir", str(target_app), "--target-url", target_db,
                         api=prefect_api))  # fmt: skip
    assert "health" in line and "HTTP 503" in line
    drop(postgres_cluster, target_db)


def test_a_full_restore_of_an_incomplete_set_changes_nothing(
    system: dict[str, Any], prefect_api: str, webhook: Any
) -> None:
    made = ok(cli("backup", "full", "--json", api=prefect_api))
    [database] = [p for p in made["parts"] if p["kind"] == "database"]
    storage = open_storage(system["STORAGE_URL"])
    storage.delete(f"db/{database['ref']}.manifest.json")  # deleted by hand since
    target_app = system["tmp"] / "never-written"
    line = one_error(cli("restore", "full", "--yes", "--app-dir", str(target_app), api=prefect_api))
    assert "incomplete" in line and database["ref"] in line
    assert not target_app.exists()
    assert system["engine"].client.containers.get("backend-1").status == "running"
    assert [m["type"] for m in webhook.messages][-1] == "failure"


def test_with_point_in_time_recovery_the_set_takes_a_base_backup_too(
    system: dict[str, Any], prefect_api: str, webhook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPPG_BACKUP_PITR", "true")
    made = ok(cli("backup", "full", "--json", api=prefect_api))
    [base] = [p for p in made["parts"] if p["kind"] == "base"]
    listed = ok(cli("list", "--kind", "base", "--json", api=prefect_api))["backups"]
    assert [b["id"] for b in listed] == [base["ref"]]
    assert [m["type"] for m in webhook.messages].count("success") == 1  # one message: the set's
    storage = open_storage(system["STORAGE_URL"])
    storage.delete(f"base/{base['ref']}.manifest.json")  # deleted by hand since: the set is incomplete
    line = one_error(cli("restore", "full", "--yes", "--app-dir", str(system["tmp"] / "never"), api=prefect_api))
    assert "incomplete" in line and base["ref"] in line
