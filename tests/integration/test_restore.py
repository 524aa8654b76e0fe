"""restore-database on a real PostgreSQL and Docker engine: data back as it was backed up, services stopped
during and running after, a safety backup first; bad input changes nothing and leaves services running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.db import postgres
from sppg_backup.db.catalog import list_backups
from sppg_backup.db.recovery import RestoreRequest
from sppg_backup.errors import CheckFailed, ConfigError, NotFoundError, TransientError
from sppg_backup.flows.backup_database import backup_database
from sppg_backup.flows.restore_database import restore_database
from sppg_backup.sandbox.clusters import fill_sample
from sppg_backup.storage.local import LocalStorage
from sppg_backup.stream.crypto import generate_key_file
from tests.dbcheck import table_contents
from tests.helpers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def live(
    backup_env: dict[str, str], postgres_cluster: Any, monkeypatch: pytest.MonkeyPatch, docker_host: Any
) -> dict[str, Any]:
    """A live ERP database with a backup of it, two backend containers, then 'corruption': rows deleted."""
    name = "erp_live_" + uuid.uuid4().hex[:6]
    url = postgres_cluster.create_database(name)
    fill_sample(url, scale=1)
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", url)
    monkeypatch.setenv("SPPG_BACKUP_SERVICES", "backend-1,backend-2")
    for service in ("backend-1", "backend-2"):
        docker_host.run(f"erp-sppg-{service}", service=service)
    good = table_contents(url)
    manifest = backup_database()
    with postgres.connect(url) as conn:
        conn.execute("DELETE FROM order_items WHERE id % 3 = 0")
        conn.execute("UPDATE users SET email = 'corrupt'")
    yield {
        "url": url,
        "name": name,
        "good": good,
        "backup": manifest,
        "engine": docker_host,
        "storage": backup_env["STORAGE_URL"].removeprefix("file://"),
    }
    for database in databases(postgres_cluster):
        if database.startswith(name):
            postgres_cluster.drop_database(database)


def databases(cluster: Any) -> list[str]:
    with postgres.connect(cluster.url()) as conn:
        return [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()]


def container_states(engine: Any) -> dict[str, str]:
    states = {}
    for container in engine.client.containers.list(all=True):
        states[container.name] = container.status
    return states


def test_restore_brings_the_data_back_with_services_stopped_during(
    live: dict[str, Any], backup_env: dict[str, str], postgres_cluster: Any, webhook: Any
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    result = restore_database(RestoreRequest(backup_id=live["backup"]["id"], confirm=True))
    assert table_contents(live["url"]) == live["good"]
    assert container_states(live["engine"]) == {"erp-sppg-backend-1": "running", "erp-sppg-backend-2": "running"}
    events = live["engine"].client.events(
        since=since, until=datetime.now(UTC) + timedelta(seconds=2), decode=True, filters={"type": "container"}
    )
    actions = [(e["Actor"]["Attributes"]["name"], e["Action"]) for e in events if e["Action"] in ("stop", "start")]
    for name in ("erp-sppg-backend-1", "erp-sppg-backend-2"):
        assert [a for n, a in actions if n == name][-2:] == ["stop", "start"]  # stopped, then started again
    # the safety copy holds the state before the restore (the 'corrupt' emails) and is never picked as latest
    safety = next(
        m
        for m in list_backups(LocalStorage(backup_env["STORAGE_URL"][7:])).backups
        if m.id == result["safety_backup_id"]
    )
    assert safety.purpose == "safety" and safety.tables["public.order_items"] < live["good"]["public.order_items"][0]
    assert not [d for d in databases(postgres_cluster) if "_restoring_" in d or "_replaced_" in d]
    assert (
        webhook.messages[-1]["title"].startswith("Restore OK")
        and result["safety_backup_id"] in webhook.messages[-1]["message"]
    )


def test_restore_over_data_needs_confirmation_and_changes_nothing(live: dict[str, Any]) -> None:
    before = table_contents(live["url"])
    with pytest.raises(CheckFailed, match="needs --yes") as caught:
        restore_database(RestoreRequest())
    assert caught.value.check == "confirmation"
    assert table_contents(live["url"]) == before
    assert set(container_states(live["engine"]).values()) == {"running"}


def test_dry_run_shows_the_plan_and_changes_nothing(live: dict[str, Any], backup_env: dict[str, str]) -> None:
    before = table_contents(live["url"])
    result = restore_database(RestoreRequest(dry_run=True))
    assert result["status"] == "dry run" and result["backup_id"] == live["backup"]["id"]
    assert result["needs_confirmation"] and result["services"] == ["backend-1", "backend-2"]
    assert any("safety backup" in step for step in result["steps"])
    assert table_contents(live["url"]) == before
    assert len(list_backups(LocalStorage(backup_env["STORAGE_URL"][7:])).backups) == 1


def test_before_picks_the_newest_backup_before_that_time(live: dict[str, Any], postgres_cluster: Any) -> None:
    with pytest.raises(NotFoundError, match="no usable backup made before"):
        restore_database(RestoreRequest(before=datetime.now(UTC) - timedelta(days=1), confirm=True))
    result = restore_database(RestoreRequest(before=datetime.now(UTC), confirm=True, safety_backup=False))
    assert result["backup_id"] == live["backup"]["id"]
    assert table_contents(live["url"]) == live["good"]
    # without a safety backup the replaced database is kept, renamed, not dropped
    kept = result["replaced_database_kept_as"]
    assert kept.startswith(live["name"] + "_replaced_") and kept in databases(postgres_cluster)


def assert_nothing_lost(live: dict[str, Any], before: dict[str, Any], cluster: Any) -> None:
    assert table_contents(live["url"]) == before
    assert set(container_states(live["engine"]).values()) == {"running"}
    assert not [d for d in databases(cluster) if "_restoring_" in d or "_replaced_" in d]


def test_unknown_backup_id(live: dict[str, Any], postgres_cluster: Any) -> None:
    before = table_contents(live["url"])
    with pytest.raises(NotFoundError, match="no backup erp_sppg_backup_19990101_000000"):
        restore_database(RestoreRequest(backup_id="erp_sppg_backup_19990101_000000", confirm=True))
    assert_nothing_lost(live, before, postgres_cluster)


def test_a_wrong_key_fails_before_anything_changes(
    live: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_cluster: Any, webhook: Any
) -> None:
    other = tmp_path / "other.txt"
    generate_key_file(other)
    monkeypatch.setenv("SPPG_BACKUP_AGE_IDENTITY_FILE", str(other))
    before = table_contents(live["url"])
    started = {c.name: c.attrs["State"]["StartedAt"] for c in live["engine"].client.containers.list(all=True)}
    with pytest.raises(ConfigError, match="is not one backup .* was encrypted to"):
        restore_database(RestoreRequest(confirm=True))
    assert_nothing_lost(live, before, postgres_cluster)
    assert [m.purpose for m in list_backups(LocalStorage(live["storage"])).backups] == ["backup"]  # no safety copy
    after = {c.name: c.attrs["State"]["StartedAt"] for c in live["engine"].client.containers.list(all=True)}
    assert after == started  # nothing was stopped
    assert webhook.messages[-1]["title"].startswith("Restore FAILED")


def test_corrupt_download(live: dict[str, Any], backup_env: dict[str, str], postgres_cluster: Any) -> None:
    for root in (backup_env["STORAGE_URL"][7:],):
        path = Path(root) / live["backup"]["data_key"]
        raw = bytearray(path.read_bytes())
        raw[2000] ^= 0x55
        path.unlink()
        path.write_bytes(bytes(raw))
    before = table_contents(live["url"])
    with pytest.raises(CheckFailed) as caught:
        restore_database(RestoreRequest(confirm=True, safety_backup=False))
    assert caught.value.check == "sha256"
    assert_nothing_lost(live, before, postgres_cluster)


def test_unreachable_target(live: dict[str, Any], postgres_cluster: Any) -> None:
    before = table_contents(live["url"])
    target = f"postgresql://postgres@127.0.0.1:{free_port()}/erp_sppg"
    with pytest.raises(TransientError, match="cannot reach database"):
        restore_database(RestoreRequest(target_url=target, confirm=True))
    assert_nothing_lost(live, before, postgres_cluster)


def test_unknown_service_fails_before_anything_stops(live: dict[str, Any], postgres_cluster: Any) -> None:
    before = table_contents(live["url"])
    with pytest.raises(NotFoundError, match="unknown service backend-9"):
        restore_database(RestoreRequest(stop_services=["backend-1", "backend-9"], confirm=True))
    assert_nothing_lost(live, before, postgres_cluster)


def test_restore_into_a_new_database_by_target_url(live: dict[str, Any], postgres_cluster: Any) -> None:
    target = postgres_cluster.url("erp_copy").replace(f":{postgres_cluster.password}@", "@")  # password borrowed
    try:
        result = restore_database(RestoreRequest(target_url=target, keep_services_running=True))
        assert result["safety_backup_id"] is None and not result["needs_confirmation"]
        assert table_contents(postgres_cluster.url("erp_copy")) == live["good"]
    finally:
        postgres_cluster.drop_database("erp_copy")


def test_cli_restore_dry_run_and_exit_codes(live: dict[str, Any], prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    sppg = [sys.executable, "-m", "sppg_backup", "restore", "db"]
    plan = subprocess.run([*sppg, "--latest", "--dry-run", "--json"], env=env, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["backup_id"] == live["backup"]["id"]
    refused = subprocess.run([*sppg, "--latest"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "needs --yes" in refused.stderr
    done = subprocess.run([*sppg, live["backup"]["id"], "--yes"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"restored {live['backup']['id']}") and "safety backup" in done.stdout
    assert table_contents(live["url"]) == live["good"]
    bad = subprocess.run([*sppg, "--before", "yesterday"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--before" in bad.stderr


def test_corruption_scenario_restores_the_newest_verified_backup(
    live: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sppg_backup.flows.recover_database_corruption import CorruptionRecovery, recover_database_corruption
    from sppg_backup.flows.verify_backup import verify_backup

    with pytest.raises(NotFoundError, match="no verified backup"):
        recover_database_corruption(CorruptionRecovery(confirm=True))
    verify_backup()
    newer = backup_database()  # made after the corruption, not verified: must not be chosen
    live["engine"].run(
        "backend-3",
        service="backend-3",
        command=["/bin/sh", "-c", "echo 'ERROR: invalid page in block 7 of relation users'; sleep 60"],
    )
    time.sleep(1)
    result = recover_database_corruption(CorruptionRecovery(services=["backend-1", "backend-3"], confirm=True))
    assert result["backup_id"] == live["backup"]["id"] != newer["id"]
    assert result["error_lines"] == {"erp-sppg-backend-1": 0, "backend-3": 1}
    assert table_contents(live["url"]) == live["good"]
    assert set(container_states(live["engine"]).values()) == {"running"}


def test_restore_fails_when_the_users_check_fails(
    live: dict[str, Any], monkeypatch: pytest.MonkeyPatch, postgres_cluster: Any
) -> None:
    monkeypatch.setenv(
        "SPPG_BACKUP_DRILL_CHECKS",
        json.dumps([{"name": "many users", "sql": "SELECT count(*) > 1000000 FROM users", "expect": "true"}]),
    )
    with pytest.raises(CheckFailed, match="many users: got false") as caught:
        restore_database(RestoreRequest(confirm=True))
    assert caught.value.check == "verify"
    assert set(container_states(live["engine"]).values()) == {"running"}
