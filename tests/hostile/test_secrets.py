"""Secrets never land in run parameters or logs: a target password, a Pushgateway password, an apprise token."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sppg_backup.db import postgres
from sppg_backup.db.recovery import RestoreRequest
from sppg_backup.ops import metrics, notify
from tests.dbcheck import drop, table_contents
from tests.helpers import cli

SECRET = "S3cr3t-Pw-77"


def flow_run_parameters(api: str) -> str:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_flow_runs(limit=200)

    return json.dumps([run.parameters for run in asyncio.run(read())], default=str)


@pytest.mark.integration
def test_a_target_password_never_reaches_the_run_parameters_or_the_output(
    fresh_backup: dict[str, Any], backup_env: dict[str, str], prefect_api: str, postgres_cluster: Any
) -> None:
    target = postgres_cluster.url("erp_copy_secret")  # with the cluster's password in it
    password = postgres.parse(target)[1]["password"]
    done = cli("restore", "db", "--latest", "--target-url", target, "--yes", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert table_contents(postgres_cluster.url("erp_copy_secret")) == table_contents(backup_env["DATABASE_URL"])
    assert password not in done.stdout + done.stderr
    assert "erp_copy_secret" in flow_run_parameters(prefect_api)  # the run is there, its password is not
    assert password not in flow_run_parameters(prefect_api)
    assert password not in Path(backup_env["AUDIT_LOG"]).read_text()
    drop(postgres_cluster, postgres_cluster.url("erp_copy_secret"))


@pytest.mark.integration
def test_a_target_with_another_login_gets_its_password_from_the_environment(
    fresh_backup: dict[str, Any], backup_env: dict[str, str], prefect_api: str, postgres_cluster: Any
) -> None:
    with postgres.connect(postgres_cluster.url()) as conn:
        conn.execute("DROP ROLE IF EXISTS restorer")
        conn.execute(f"CREATE ROLE restorer LOGIN SUPERUSER PASSWORD '{SECRET}'")
    target = postgres_cluster.url("erp_copy_other").replace(f"postgres:{postgres_cluster.password}@", "restorer:")
    done = cli("restore", "db", "--latest", "--target-url", target.replace("restorer:", f"restorer:{SECRET}@"),
               "--yes", "--no-safety-backup", api=prefect_api)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert SECRET not in flow_run_parameters(prefect_api) and SECRET not in done.stdout + done.stderr
    assert table_contents(postgres_cluster.url("erp_copy_other")) == table_contents(backup_env["DATABASE_URL"])
    drop(postgres_cluster, postgres_cluster.url("erp_copy_other"))


def test_the_form_refuses_a_target_url_with_a_password() -> None:
    for url in (f"postgresql://postgres:{SECRET}@db/erp", f"postgresql://postgres@db/erp?password={SECRET}"):
        with pytest.raises(ValidationError, match="leave the password out") as caught:
            RestoreRequest(target_url=url)
        assert SECRET not in str(caught.value).split("input_value")[0]


def test_a_pushgateway_password_is_masked_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        metrics.record({"kind": "db"}, {"backup_health_alerts": 0}, None, f"http://ops:{SECRET}@127.0.0.1:1")
    assert "cannot push metrics" in caplog.text and SECRET not in caplog.text


def test_a_malformed_apprise_url_never_shows_its_token(caplog: pytest.LogCaptureFixture) -> None:
    token = "TIia!jkdn" + SECRET
    with caplog.at_level(logging.DEBUG):
        assert not notify.send(notify.Routes([f"slack://T1JJ3T3L2/A1BRTD4JD/{token}"]), "title", "body", ok=True)
    assert "not valid for apprise" in caplog.text and "invalid Slack" in caplog.text
    assert token not in caplog.text and SECRET not in caplog.text


@pytest.mark.integration
def test_a_port_that_is_not_a_number_is_a_bad_setting(backup_env: dict[str, str], prefect_api: str) -> None:
    done = cli("backup", "db", api=prefect_api, env={"SPPG_BACKUP_DATABASE_URL": "postgresql://u@127.0.0.1:54x/db"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "DATABASE_URL" in lines[0] and "not a number" in lines[0]
