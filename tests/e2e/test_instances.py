"""Two ERP instances from one install on a real Prefect server (on PostgreSQL): `sppg-backup deployments
--instances FILE --apply` deploys each instance's deployments with `prefect deploy`, one worker takes both
instances' backups at once, and each instance sees only its own: storage prefix, run names and tags, notification
titles, and a restore form that neither lists nor restores the other's backup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sppg_backup.db.catalog import list_backups
from sppg_backup.sandbox.clusters import fill_sample, prefect_database, prefect_server
from sppg_backup.settings import load_settings
from sppg_backup.storage import open_storage
from tests.e2e.client import deployment, trigger, wait_final
from tests.e2e.conftest import ROOT, quiet_frequent_schedules, start_worker

pytestmark = pytest.mark.e2e
SITES = ("site-a", "site-b")


def instance_configs(tmp_path: Path, postgres_cluster: Any, age_key: tuple[Path, str], hook: str) -> dict[str, Path]:
    """Each instance's settings file on the worker host: its own database, one shared storage URL and local folder
    (the instance's name makes the folders apart)."""
    configs = {}
    for site in SITES:
        url = postgres_cluster.create_database("erp_" + site.replace("-", "_"))
        fill_sample(url, scale=1)
        configs[site] = tmp_path / f"{site}.toml"
        configs[site].write_text(
            f'instance = "{site}"\ndatabase_url = "{url}"\nstorage_url = "{(tmp_path / "storage").as_uri()}"\n'
            f'local_dir = "{tmp_path / "local"}"\nstate_dir = "{tmp_path / "state"}"\n'
            f'age_recipients = ["{age_key[1]}"]\nage_identity_file = "{age_key[0]}"\nnotify_urls = ["{hook}"]\n'
            'min_backup_size = 10000\nretry_delay_seconds = 0\nuploads_dir = ""\n'
        )
    return configs


def test_two_instances_deployed_from_one_file_never_see_each_others_backups(
    tmp_path: Path, postgres_cluster: Any, age_key: tuple[Path, str], webhook: Any
) -> None:
    configs = instance_configs(tmp_path, postgres_cluster, age_key, webhook.url)
    listed = tmp_path / "instances.toml"
    listed.write_text("".join(f'[instances.{site}]\nconfig = "{configs[site]}"\n\n' for site in SITES))
    (tmp_path / "prefect").mkdir()
    with prefect_server(tmp_path / "prefect", prefect_database(postgres_cluster, "prefect_instances")) as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")} | {"PREFECT_API_URL": api}
        cli = str(Path(sys.executable).with_name("sppg-backup"))
        base = len(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])
        plain = subprocess.run([cli, "deployments", "--apply"], env=env, capture_output=True, text=True)  # before
        assert plain.returncode == 0 and "nobody is told" in plain.stdout, plain.stdout + plain.stderr
        done = subprocess.run(
            [cli, "deployments", "--instances", str(listed), "--apply"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"deployed {2 * base} deployments" in done.stdout
        assert "1 notification URLs are told" in done.stdout  # the instances' own, each once
        assert f"warning: {base} deployments of the pool are not in this deploy and still run" in done.stderr
        assert "backup-database/daily" in done.stderr  # the plain ones from before: named, not deleted
        quiet_frequent_schedules(api, every_one=True)  # only the test's runs
        # one worker on the database queue, its own settings those of neither instance's run
        worker = start_worker(api, configs["site-a"], tmp_path / "worker.log", "unix:///nonexistent")
        try:
            runs = {site: trigger(api, {}, f"backup-database/{site}-daily") for site in SITES}  # at once
            finished = {site: wait_final(api, run_id, timeout=180) for site, run_id in runs.items()}
            # a second one of site-b alone: an id only site-b has (two catalogs may each hold the same id)
            again = wait_final(api, trigger(api, {}, "backup-database/site-b-daily"), timeout=180)
            assert again.state.is_completed(), again.state
            # typed by hand (a script, or the form's JSON): the other instance's backup is not there to restore
            newest_b = list_backups(open_storage(load_settings(configs["site-b"]).storage_url)).backups[-1].id
            request = {"request": {"backup_id": newest_b, "dry_run": True}}
            wrong = wait_final(api, trigger(api, request, "restore-database/site-a-on-demand"), timeout=120)
        finally:
            worker.terminate()
            worker.wait(60)
        ids = {}
        for site, run in finished.items():
            assert run.state.is_completed(), (run.state, (tmp_path / "worker.log").read_text()[-3000:])
            assert run.name.startswith(f"{site}: ") and f"instance:{site}" in run.tags
            settings = load_settings(configs[site])
            assert settings.storage_url == (tmp_path / "storage" / site).as_uri()
            backups = list_backups(open_storage(settings.storage_url)).backups
            assert {b.source.database for b in backups} == {"erp_" + site.replace("-", "_")}
            ids[site] = {b.id for b in backups}
            assert (tmp_path / "local" / site / "db").is_dir()
        assert len(ids["site-a"]) == 1 and newest_b in ids["site-b"] - ids["site-a"]
        titles = [m["title"] for m in webhook.messages if "Backup OK" in m["title"]]
        assert sorted(t.split(" ", 1)[0] for t in titles) == ["[site-a]", "[site-b]", "[site-b]"]
        for site in SITES:  # each form lists its instance's backups, and only those
            form = deployment(api, f"restore-database/{site}-on-demand").parameter_openapi_schema
            choices = form["definitions"]["RestoreRequest"]["properties"]["backup_id"]["enum"]
            assert {c.split(" ", 1)[0] for c in choices[1:]} == ids[site]
        assert wrong.state.is_failed() and f"no backup {newest_b} in " in wrong.state.message
        assert list_backups(open_storage(load_settings(configs["site-b"]).storage_url)).backups  # untouched
