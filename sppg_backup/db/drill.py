"""The weekly recovery drill: restore the newest backup as a disaster would, check it, measure RTO and RPO."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sppg_backup import keys
from sppg_backup.db import postgres
from sppg_backup.errors import CheckFailed
from sppg_backup.settings import SmokeCheck
from sppg_backup.storage import Storage, get_bytes, put_bytes


class SmokeResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    sql: str
    expect: str
    got: str | None
    passed: bool


class AppTestResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    command: str
    exit_code: int | None
    seconds: float
    output_tail: str


class DrillReport(BaseModel):
    """The evidence for the monthly compliance check: what was restored, how long it took, how old the data was."""

    model_config = ConfigDict(frozen=True)
    id: str
    kind: Literal["dump", "pitr"] = "dump"  # pitr: a base backup and the WAL after it, recovered to the newest
    backup_id: str | None
    backup_created_at: datetime | None
    started_at: datetime
    finished_at: datetime
    status: Literal["passed", "failed"]
    failed_step: str | None = None
    detail: str = ""
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    steps: dict[str, float] = {}
    smoke_checks: list[SmokeResult] = []
    app_test: AppTestResult | None = None


def new_drill_id(now: datetime) -> str:
    return "drill_" + now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")


def run_smoke_checks(url: str, checks: list[SmokeCheck]) -> list[SmokeResult]:
    """Run each query; its first column must equal `expect` (booleans as true/false)."""
    results = []
    with postgres.connect(url) as conn:
        for check in checks:
            try:
                row = conn.execute(check.sql).fetchone()  # type: ignore[arg-type]
                got = None if row is None else _text(row[0])
            except Exception as exc:  # a broken query fails its check, with the database's words
                got = f"error: {str(exc).strip().splitlines()[0]}"
            results.append(
                SmokeResult(
                    name=check.name,
                    sql=check.sql,
                    expect=check.expect,
                    got=got,
                    passed=got == check.expect.strip().lower(),
                )
            )
    return results


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower()


def run_app_test(command: str, url: str, timeout: int) -> AppTestResult:
    """The application's own tests against the restored database (the guide runs `go test ./...`).

    The command gets DATABASE_URL and the libpq PG* variables of the restored database.
    """
    target, params = postgres.parse(url)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PGHOST": target.host,
        "PGPORT": str(target.port),
        "PGDATABASE": target.database,
        "PGUSER": target.user,
    }
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    started = datetime.now(UTC)
    try:
        done = subprocess.run(
            command, shell=True, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        code, output = done.returncode, (done.stdout + done.stderr)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        code, output = None, f"{partial}\ntimed out after {timeout} s"
    return AppTestResult(
        command=command,
        exit_code=code,
        output_tail=str(output)[-2000:],
        seconds=round((datetime.now(UTC) - started).total_seconds(), 3),
    )


class Stopwatch:
    """Times the drill's steps; RTO is the time from the start until the restored database passed its checks."""

    def __init__(self) -> None:
        self.started_at = datetime.now(UTC)
        self._start = time.monotonic()
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.steps[step] = round(time.monotonic() - began, 3)

    def restart(self) -> None:
        """Start timing again (after waiting for another run: that wait is not part of a restore)."""
        self.started_at = datetime.now(UTC)
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return round(time.monotonic() - self._start, 3)


def build_report(
    watch: Stopwatch,
    backup_id: str | None,
    backup_created_at: datetime | None,
    rto_seconds: float | None,
    smoke: list[SmokeResult],
    app: AppTestResult | None,
    failure: CheckFailed | None,
    data_as_of: datetime | None = None,
    kind: Literal["dump", "pitr"] = "dump",
) -> DrillReport:
    """Passed only when every step ran and every smoke check and the application tests passed. RPO: how old
    the newest restorable data is (the backup's time, or for point-in-time recovery the newest WAL's)."""
    failed_step, detail = None, "restored, smoke checks passed" + (", application tests passed" if app else "")
    bad_checks = [r for r in smoke if not r.passed]
    if failure is not None:
        failed_step, detail = failure.check, str(failure)
    elif bad_checks:
        failed_step = "smoke checks"
        detail = "; ".join(f"{r.name}: got {r.got}, expected {r.expect}" for r in bad_checks)
    elif app is not None and app.exit_code != 0:
        last = app.output_tail.strip().splitlines()[-1:] or ["no output"]
        failed_step, detail = "application tests", f"`{app.command}` exited with {app.exit_code}: {last[0]}"
    newest = data_as_of or backup_created_at
    return DrillReport(
        id=new_drill_id(watch.started_at),
        kind=kind,
        backup_id=backup_id,
        backup_created_at=backup_created_at,
        started_at=watch.started_at,
        finished_at=datetime.now(UTC),
        status="failed" if failed_step else "passed",
        failed_step=failed_step,
        detail=detail,
        rto_seconds=rto_seconds if not failed_step else None,
        rpo_seconds=round((watch.started_at - newest).total_seconds(), 3) if newest else None,
        steps=watch.steps,
        smoke_checks=smoke,
        app_test=app,
    )


def save(storage: Storage, report: DrillReport) -> str:
    key = keys.drill_report(report.id)
    put_bytes(storage, key, report.model_dump_json(indent=2).encode())
    return key


def history(storage: Storage) -> tuple[list[DrillReport], list[str]]:
    """Past drills from storage, oldest first, and the keys of unreadable reports."""
    reports, unreadable = [], []
    for obj in storage.list(keys.DRILLS):
        try:
            reports.append(DrillReport.model_validate_json(get_bytes(storage, obj.key)))
        except (ValidationError, ValueError):
            unreadable.append(obj.key)
    return sorted(reports, key=lambda r: r.started_at), unreadable
