"""The deploy step: the work pool, every deployment (prefect.yaml, or made from it per instance) with `prefect
deploy`, and the automations beside them, applied together against the server of PREFECT_API_URL."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from sppg_backup.deployments.automations import apply_automations, automations
from sppg_backup.deployments.serve import prefect_yaml
from sppg_backup.errors import ConfigError
from sppg_backup.instances import instance_deployments, read_instances

POOL = "sppg-backup"
HEADER = "# Made by `sppg-backup deployments --instances {source}` from prefect.yaml: edit those, not this file.\n"


def deployments_file(instances_file: Path | None) -> tuple[str, int]:
    """The text of the deployments file to deploy, and how many deployments it holds."""
    plain = prefect_yaml().read_text()
    base = yaml.safe_load(plain)
    if instances_file is None:
        return plain, len(base["deployments"])
    made = instance_deployments(base, read_instances(instances_file))
    text = HEADER.format(source=instances_file) + yaml.safe_dump(made, sort_keys=False, width=120)
    return text, len(made["deployments"])


def ensure_pool() -> bool:
    """The process work pool `sppg-backup`; True when it was made now."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(POOL)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            return True


def apply(text: str, crash_after: int, urls: list[str]) -> tuple[list[str], str]:
    """Deploy `text` (a prefect.yaml) with `prefect deploy --all` from the checkout, then the automations (a run
    silent for `crash_after` s is Crashed, and `urls` are told); the automations' names and who is told."""
    if not PREFECT_API_URL.value():
        raise ConfigError("PREFECT_API_URL is not set: the deployments go to a Prefect server (export its /api URL)")
    automations(crash_after, None)  # a bad --crash-after or automations.yaml before anything is deployed
    ensure_pool()
    root = prefect_yaml().parent  # entrypoints are relative to the checkout
    # in the temp folder: the checkout may be read-only (the image runs as a user who does not own it)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="sppg-deploy-") as file:
        file.write(text)
        file.flush()
        prefect = str(Path(sys.executable).with_name("prefect"))
        done = subprocess.run(
            [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", file.name],
            cwd=root,
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:  # its words, without the boxes it draws around them
        words = [line.strip(" │╭╮╰╯─") for line in (done.stderr + done.stdout).splitlines()]
        said = " ".join(w for w in words if w)[-600:]
        raise ConfigError(f"prefect deploy failed (exit {done.returncode}): {said}")
    return apply_automations(crash_after, urls)


def stale(text: str) -> list[str]:
    """Deployments of the pool that `text` does not hold (an instance taken out of the file, the plain ones left
    from before instances): they still run on their schedules, with whatever settings their worker has."""
    wanted = {(d["entrypoint"], d["name"]) for d in yaml.safe_load(text)["deployments"]}
    with get_client(sync_client=True) as client:
        found = client.read_deployments(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])))
        flows = {f.id: f.name for f in client.read_flows()} if found else {}
    return sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in found if (d.entrypoint, d.name) not in wanted)
