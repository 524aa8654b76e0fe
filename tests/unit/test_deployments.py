"""prefect.yaml and `sppg-backup serve` describe the same schedules, and their entrypoints load."""

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]


def test_prefect_yaml_daily_backup_runs_at_0300_jakarta_on_the_process_pool() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    daily = next(d for d in config["deployments"] if d["entrypoint"].endswith(":backup_database"))
    assert daily["schedules"] == [{"cron": "0 3 * * *", "timezone": "Asia/Jakarta"}]
    assert daily["work_pool"]["name"] == "sppg-backup"
    for deployment in config["deployments"]:
        module, _, name = deployment["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
        assert flow.name


def test_serve_has_the_same_schedule() -> None:
    from deployments.serve import deployments

    daily = next(d for d in deployments() if d.flow_name == "backup-database")
    [schedule] = daily.schedules
    assert schedule.schedule.cron == "0 3 * * *" and schedule.schedule.timezone == "Asia/Jakarta"
