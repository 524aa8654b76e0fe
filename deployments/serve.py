"""Serve every deployment from this process (no work pool): prefect.yaml is read, so the schedules, forms and
limits are those `prefect deploy --all` makes, defined once."""

from __future__ import annotations

import importlib
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from sppg_backup.errors import ConfigError
from sppg_backup.physical.receiver import die_with_parent

log = logging.getLogger(__name__)

PLACES = (Path(__file__).resolve().parents[1] / "prefect.yaml", Path.cwd() / "prefect.yaml")  # the checkout's


def prefect_yaml() -> Path:
    for place in PLACES:
        if place.is_file():
            return place
    raise ConfigError("prefect.yaml not found: run `sppg-backup serve` in the sppg-backup checkout")


def _limit(entry: dict[str, Any]) -> ConcurrencyLimitConfig | None:
    limit = entry.get("concurrency_limit")
    if not limit:
        return None
    strategy = ConcurrencyLimitStrategy(limit.get("collision_strategy", "ENQUEUE"))
    return ConcurrencyLimitConfig(limit=limit["limit"], collision_strategy=strategy)


def _parameters(entry: dict[str, Any], config_file: str | None) -> dict[str, Any] | None:
    parameters = entry.get("parameters")
    if config_file is None:
        return parameters
    return {"config_file": config_file, **(parameters or {})}


def deployments(config_file: str | None = None) -> list[Any]:
    """Every deployment of prefect.yaml; `config_file` (serve --config) goes to the runs that name none."""
    made = []
    for entry in yaml.safe_load(prefect_yaml().read_text())["deployments"]:
        module, _, name = entry["entrypoint"].partition(":")
        flow = getattr(importlib.import_module("sppg_backup." + module.removesuffix(".py").replace("/", ".")), name)
        made.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags"),
                schedules=[Cron(s["cron"], timezone=s["timezone"]) for s in entry.get("schedules", [])],
                concurrency_limit=_limit(entry),
                parameters=_parameters(entry, config_file),
                enforce_parameter_schema=entry.get("enforce_parameter_schema", True),
            )
        )
    return made


class Beside:
    """`sppg-backup wal stream` in a process of its own beside the served deployments (a flow run that never ends
    is the wrong shape): started again when it dies, stopped (SIGTERM: it uploads what it has) with serve, and
    gone with it even after kill -9 (its parent-death signal)."""

    def __init__(self, config_file: str | None) -> None:
        self.command = [sys.executable, "-m", "sppg_backup", *(["--config", config_file] if config_file else [])]
        self.command += ["wal", "stream"]
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._keep, name="wal-receiver", daemon=True)

    def _keep(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            began = time.monotonic()
            self.child = subprocess.Popen(self.command, preexec_fn=die_with_parent)  # noqa: PLW1509
            code = self.child.wait()
            if self.stopping.is_set():
                return
            backoff = 1.0 if time.monotonic() - began > 60 else min(backoff * 2, 60.0)
            log.error("the WAL receiver ended (exit %s); starting it again in %.0f s", code, backoff)
            self.stopping.wait(backoff)

    def __enter__(self) -> Beside:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(60)
            except subprocess.TimeoutExpired:
                self.child.kill()
        self.thread.join(5)


def serve_all(config_file: str | None = None, pitr: bool = False) -> None:
    """Every deployment; with point-in-time recovery set up, the WAL receiver beside them."""
    made = deployments(config_file)
    if not pitr:
        serve(*made)
        return
    with Beside(config_file):
        serve(*made)
