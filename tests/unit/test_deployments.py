"""prefect.yaml and `sppg-backup serve` describe the same schedules, and their entrypoints load."""

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
EXPECTED = {
    "backup-database": "0 3 * * *",
    "verify-backup": "0 4 * * *",
    "recovery-drill": "0 5 * * 0",
    "check-backup-health": "*/15 * * * *",
}


def yaml_schedules() -> dict[str, str]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    found = {}
    for deployment in config["deployments"]:
        module, _, name = deployment["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
        assert deployment["work_pool"]["name"] == "sppg-backup"
        for schedule in deployment.get("schedules", []):
            assert schedule["timezone"] == "Asia/Jakarta"
            found[flow.name] = schedule["cron"]
    return found


def test_prefect_yaml_has_the_guides_schedules_in_jakarta_time() -> None:
    assert yaml_schedules() == EXPECTED


def test_serve_has_the_same_schedules() -> None:
    from deployments.serve import deployments

    served = {}
    for deployment in deployments():
        for schedule in deployment.schedules:
            assert schedule.schedule.timezone == "Asia/Jakarta"
            served[deployment.flow_name] = schedule.schedule.cron
    assert served == EXPECTED
