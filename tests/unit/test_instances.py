"""Several ERP instances from one install: the instances file, the deployments made per instance, and what each
instance keeps apart (storage prefix, local folders, metrics labels, notification titles)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sppg_backup.deployments.apply import deployments_file
from sppg_backup.errors import ConfigError
from sppg_backup.instances import belongs, instance_of, read_instances
from sppg_backup.ops import metrics
from sppg_backup.settings import load_settings

ROOT = Path(__file__).parents[2]
TWO = """
[instances.site-a]
config = "/etc/sppg-backup/site-a.toml"

[instances.site-b]
config = "/etc/sppg-backup/site-b.toml"
database_queue = "site-b-database"
"""


def test_each_instance_gets_every_deployment_on_its_queue_with_its_settings(tmp_path: Path) -> None:
    (tmp_path / "instances.toml").write_text(TWO)
    text, count = deployments_file(tmp_path / "instances.toml")
    made = yaml.safe_load(text)["deployments"]
    base = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert count == len(made) == 2 * len(base)
    assert "&id" not in text and "*id" not in text  # plain YAML, no anchors
    names = [(d["entrypoint"], d["name"]) for d in made]
    assert len(set(names)) == len(names)  # prefect deploy needs each flow's deployment names unique
    for d in made:
        instance = instance_of(d["tags"])
        assert d["name"].startswith(f"{instance}-") and d["description"].startswith(f"[{instance}] ")
        env = d["work_pool"]["job_variables"]["env"]
        assert env == {"SPPG_BACKUP_CONFIG": f"/etc/sppg-backup/{instance}.toml", "SPPG_BACKUP_INSTANCE": instance}
    daily = {instance_of(d["tags"]): d for d in made if d["entrypoint"].endswith(":backup_database")}
    assert daily["site-a"]["work_pool"]["work_queue_name"] == "database"
    assert daily["site-b"]["work_pool"]["work_queue_name"] == "site-b-database"  # its own host's worker
    assert (
        daily["site-a"]["schedules"]
        == daily["site-b"]["schedules"]
        == [{"cron": "0 3 * * *", "timezone": "Asia/Jakarta"}]
    )
    files = next(d for d in made if d["entrypoint"].endswith(":backup_files") and "instance:site-b" in d["tags"])
    assert files["work_pool"]["work_queue_name"] == "application"
    assert files["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "no [instances.<name>] table"),
        ("[instances.Site_A]\nconfig = '/etc/a.toml'\n", "instance 'Site_A': name: a name is lower-case letters"),
        ("[instances.a]\nconfig = 'a.toml'\n", "instance 'a': config: must be an absolute path"),
        ("[instances.a]\n", "instance 'a': config: Field required"),
        ("[instances.a]\nconfig = '/a.toml'\nqueue = 'x'\n", "instance 'a': queue: Extra inputs are not permitted"),
        ("[instances.a\n", "instances file"),
    ],
)
def test_a_bad_instances_file_is_one_line_naming_what_is_wrong(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "i.toml").write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        read_instances(tmp_path / "i.toml")
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_an_instance_keeps_its_catalog_copies_and_state_in_folders_of_its_own() -> None:
    settings = load_settings(
        instance="site-a", storage_url="gs://erp-backups/sppg", replica_urls="gs://erp-dr/sppg,file:///dr/site-a"
    )
    assert settings.storage_url == "gs://erp-backups/sppg/site-a"
    assert settings.replica_urls == ["gs://erp-dr/sppg/site-a", "file:///dr/site-a"]  # already its folder
    assert settings.local_dir == Path("/backups/site-a") and settings.state_dir.name == "site-a"
    again = load_settings(**settings.model_dump())  # a set's recorded settings, read on a new host
    assert again.storage_url == settings.storage_url and again.local_dir == settings.local_dir
    plain = load_settings(storage_url="gs://erp-backups/sppg")
    assert plain.storage_url == "gs://erp-backups/sppg" and plain.local_dir == Path("/backups")


def test_a_run_of_one_instance_reads_that_instances_settings_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "b.toml").write_text('instance = "site-b"\nstorage_url = "file:///srv/backups"\n')
    (tmp_path / "shared.toml").write_text('storage_url = "file:///srv/backups"\n')
    (tmp_path / "a.toml").write_text('instance = "site-a"\nstorage_url = "file:///srv/backups"\n')
    assert load_settings(tmp_path / "b.toml").storage_url == "file:///srv/backups/site-b"
    monkeypatch.setenv("SPPG_BACKUP_INSTANCE", "site-a")  # as site-a's deployments set it
    with pytest.raises(ConfigError, match="is the settings of instance site-b, not of site-a"):
        load_settings(tmp_path / "b.toml")
    with pytest.raises(ConfigError, match='names no instance: add instance = "site-a" to it'):
        load_settings(tmp_path / "shared.toml")  # a template: whose database would it restore onto?
    with pytest.raises(ConfigError, match="no settings file .SPPG_BACKUP_CONFIG. names its database"):
        load_settings()
    assert load_settings(tmp_path / "a.toml").storage_url == "file:///srv/backups/site-a"
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", "postgresql://backup@db/erp_sppg")  # the worker's own
    with pytest.raises(ConfigError, match="SPPG_BACKUP_DATABASE_URL is set in the worker's environment: it would"):
        load_settings(tmp_path / "a.toml")
    monkeypatch.delenv("SPPG_BACKUP_INSTANCE")
    with pytest.raises(ConfigError, match="SPPG_BACKUP_INSTANCE: an instance name is lower-case"):
        load_settings(instance="Site A")


def test_instances_metrics_stay_apart_in_one_textfile(tmp_path: Path) -> None:
    prom = tmp_path / "sppg.prom"
    for name, size in (("site-a", 100.0), ("site-b", 200.0)):
        metrics.record(metrics.with_instance({"kind": "db"}, name), {"backup_file_size_bytes": size}, prom, None)
    text = prom.read_text()
    assert 'backup_file_size_bytes{erp_instance="site-a",kind="db"} 100.0' in text
    assert 'backup_file_size_bytes{erp_instance="site-b",kind="db"} 200.0' in text


def test_a_deployment_belongs_to_its_instance_only() -> None:
    assert belongs(["backup", "instance:site-a"], "site-a")
    assert not belongs(["backup", "instance:site-b"], "site-a")
    assert not belongs(["backup", "instance:site-a"], None) and belongs(["backup"], None)


def test_the_crash_automation_takes_the_window_and_leaves_the_notification_out_without_urls() -> None:
    from sppg_backup.deployments.automations import automations

    (told,) = automations(120, "00000000-0000-0000-0000-000000000001")
    assert told.trigger.within.total_seconds() == 120  # type: ignore[union-attr]
    assert [a.type for a in told.actions] == ["change-flow-run-state", "send-notification"]
    assert "No heartbeat for 120 s" in told.actions[0].message  # type: ignore[union-attr]
    (silent,) = automations(300, None)
    assert [a.type for a in silent.actions] == ["change-flow-run-state"]
    with pytest.raises(ConfigError, match="--crash-after 30: at least 75 s"):
        automations(30, None)


def test_a_textfile_shared_with_a_writer_of_no_instance_keeps_both(tmp_path: Path) -> None:
    prom = tmp_path / "sppg.prom"
    metrics.record({"kind": "wal"}, {"backup_last_success_timestamp": 1.0}, prom, None)  # e.g. the WAL receiver
    metrics.record(metrics.with_instance({"kind": "db"}, "site-a"), {"backup_last_success_timestamp": 2.0}, prom, None)
    metrics.record({"kind": "wal"}, {"backup_last_success_timestamp": 3.0}, prom, None)  # again: no duplicate
    lines = [line for line in prom.read_text().splitlines() if line.startswith("backup_last_success_timestamp")]
    assert sorted(lines) == [
        'backup_last_success_timestamp{erp_instance="",kind="wal"} 3.0',
        'backup_last_success_timestamp{erp_instance="site-a",kind="db"} 2.0',
    ]


def test_two_instances_on_hosts_that_both_say_localhost_take_limits_of_their_own() -> None:
    from sppg_backup.ops.limits import DATABASE, names

    a, b = (load_settings(instance=site, database_url="postgresql://backup@localhost/erp_sppg") for site in ("a", "b"))
    assert set(names(a, (DATABASE,))).isdisjoint(names(b, (DATABASE,)))
    assert "sppg-backup:database:a:erp_sppg@localhost:5432" in names(a, (DATABASE,))


def test_the_crash_message_is_the_one_the_slot_release_knows() -> None:
    from sppg_backup.deployments.automations import automations
    from sppg_backup.ops.limits import CRASHED_BY_AUTOMATION

    (crash,) = automations(300, None)
    assert crash.actions[0].message.startswith(CRASHED_BY_AUTOMATION)  # type: ignore[union-attr]
