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
    "backup-files": "*/5 * * * *",
    "backup-config": "*/10 * * * *",
    "prune-file-snapshots": "30 2 * * *",
    "backup-full-system": "0 1 * * 0",
    "backup-base": "0 2 * * 0",
    "verify-base-backup": "30 3 * * 0",
    "recovery-drill-pitr": "30 5 * * 0",
    "replicate-backups": "7-59/15 * * * *",
    "replicate-backups/daily-verify": "0 6 * * *",
}


def yaml_schedules() -> dict[str, str]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    found = {}
    for deployment in config["deployments"]:
        module, _, name = deployment["entrypoint"].partition(":")
        flow = getattr(importlib.import_module("sppg_backup." + module.removesuffix(".py").replace("/", ".")), name)
        assert deployment["work_pool"]["name"] == "sppg-backup"
        for schedule in deployment.get("schedules", []):
            assert schedule["timezone"] == "Asia/Jakarta"
            # a flow with two deployments: the second one by its name too
            found[flow.name if flow.name not in found else f"{flow.name}/{deployment['name']}"] = schedule["cron"]
    return found


def test_prefect_yaml_has_the_guides_schedules_in_jakarta_time() -> None:
    assert yaml_schedules() == EXPECTED


def test_restore_deployments_have_forms_and_no_schedule() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    on_demand = {d["entrypoint"]: d for d in config["deployments"] if d["name"] == "on-demand"}
    assert set(on_demand) == {
        "flows/restore_database.py:restore_database",
        "flows/recover_database_corruption.py:recover_database_corruption",
        "flows/restore_files.py:restore_files",
        "flows/restore_files.py:restore_config",
        "flows/restore_full_system.py:restore_full_system",
        "flows/recover_server.py:recover_server",
        "flows/restore_pitr.py:restore_pitr",
        "flows/cloudsql.py:cloudsql_backups",
        "flows/cloudsql.py:cloudsql_restore",
        "flows/cloudsql.py:cloudsql_clone",
    }
    assert all("schedules" not in d for d in on_demand.values())
    from prefect.utilities.callables import parameter_schema

    from sppg_backup.flows.restore_database import restore_database

    schema = parameter_schema(restore_database.fn).model_dump()
    fields = schema["definitions"]["RestoreRequest"]["properties"]
    assert {"backup_id", "before", "target_url", "stop_services", "confirm", "safety_backup", "dry_run"} <= set(fields)
    assert all(field.get("description") for field in fields.values())


def test_serve_has_the_same_schedules() -> None:
    from sppg_backup.deployments.serve import deployments

    served = {}
    for deployment in deployments():
        for schedule in deployment.schedules:
            assert schedule.schedule.timezone == "Asia/Jakarta"
            name = deployment.flow_name
            served[name if name not in served else f"{name}/{deployment.name}"] = schedule.schedule.cron
    assert served == EXPECTED


def test_file_snapshots_never_run_twice_at_once() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    limited = {d["entrypoint"] for d in config["deployments"] if d.get("concurrency_limit", {}).get("limit") == 1}
    assert {
        "flows/backup_files.py:backup_files",
        "flows/backup_config.py:backup_config",
        "flows/prune_file_snapshots.py:prune_file_snapshots",
    } <= limited


# The application host's work: what needs APP_DIR, UPLOADS_DIR or the application's Docker engine; the rest
# (dumps, base backups, WAL, verification, drills, restores, prune, replicas, Cloud SQL) is the database host's.
APPLICATION = {
    "backup_files", "backup_config", "prune_file_snapshots", "restore_files", "restore_config",
    "backup_full_system", "restore_full_system", "recover_server",
}  # fmt: skip


def test_every_deployment_goes_to_the_queue_of_the_host_that_holds_its_data() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    queues = {d["entrypoint"].partition(":")[2]: d["work_pool"]["work_queue_name"] for d in config["deployments"]}
    assert {flow for flow, queue in queues.items() if queue == "application"} == APPLICATION
    assert set(queues.values()) == {"database", "application"}
    assert {"backup_database", "backup_base", "restore_pitr", "restore_database", "prune_backups"} <= {
        flow for flow, queue in queues.items() if queue == "database"
    }
