"""A production database on Cloud SQL (the guide's PITR section): its automatic backups listed, one restored
onto the instance, or the instance cloned to a point in time, through the Cloud SQL Admin API with Google's
client library; each operation waited on until it is done, failed or out of time.

The guide's commands, done here:
    gcloud sql backups list --instance=erp-sppg-db
    gcloud sql backups restore BACKUP_ID --restore-instance=erp-sppg-db
    gcloud sql instances clone erp-sppg-db erp-sppg-db-restored --point-in-time '2024-01-15T10:00:00.000Z'
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sppg_backup.errors import CheckFailed, ConfigError, NotFoundError, PermanentError, TransientError

CREDENTIALS = "set SPPG_BACKUP_GCP_CREDENTIALS_BLOCK or SPPG_BACKUP_GCP_SERVICE_ACCOUNT_FILE, or log in with gcloud"


@dataclass(frozen=True)
class BackupRun:
    id: str
    status: str
    kind: str  # AUTOMATED or ON_DEMAND
    started: datetime | None
    ended: datetime | None
    description: str


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class CloudSql:
    """One Cloud SQL instance of one project. `endpoint` replaces https://sqladmin.googleapis.com/ (a private
    endpoint, or the tests' local fake of the API)."""

    def __init__(
        self,
        project: str,
        instance: str,
        credentials: Any,
        endpoint: str | None = None,
        timeout_seconds: float = 3600,
        poll_seconds: float = 5,
    ) -> None:
        from google.auth.exceptions import GoogleAuthError
        from googleapiclient.discovery import build

        self.project, self.instance = project, instance
        self.timeout_seconds, self.poll_seconds = timeout_seconds, poll_seconds
        options = {"api_endpoint": endpoint} if endpoint else None
        try:
            self.api = build(
                "sqladmin",
                "v1",
                credentials=credentials,
                client_options=options,
                static_discovery=True,
                cache_discovery=False,
            )
        except GoogleAuthError as exc:
            raise ConfigError(f"no Google credentials for Cloud SQL ({exc}); {CREDENTIALS}") from None

    def _call(self, request: Any, what: str, retries: int = 3) -> dict[str, Any]:
        """One request; only reads are retried (a restore or clone sent twice is refused the second time)."""
        from google.auth.exceptions import GoogleAuthError
        from googleapiclient.errors import HttpError
        from httplib2 import HttpLib2Error

        try:
            return request.execute(num_retries=retries)  # type: ignore[no-any-return]
        except GoogleAuthError as exc:
            raise ConfigError(f"{what}: the Google credentials were refused ({exc}); {CREDENTIALS}") from None
        except HttpLib2Error as exc:  # the API cannot be reached (a name that does not resolve...)
            raise TransientError(f"{what}: {exc}") from None
        except HttpError as exc:
            said = _message(exc)
            status = exc.resp.status
            if status == 404:
                raise NotFoundError(f"{what}: {said}") from None
            if status in (401, 403):
                raise ConfigError(
                    f"{what}: access denied ({said}); the service account needs roles/cloudsql.admin"
                ) from None
            if status in (429, 500, 502, 503, 504):
                raise TransientError(f"{what}: {said}") from None
            raise PermanentError(f"{what}: {said}") from None
        except OSError as exc:  # the API cannot be reached
            raise TransientError(f"{what}: {exc}") from None

    def backups(self) -> list[BackupRun]:
        """The instance's backup runs, newest first."""
        runs: list[BackupRun] = []
        token = None
        while True:
            page = self._call(
                self.api.backupRuns().list(project=self.project, instance=self.instance, pageToken=token),
                f"cannot list the backups of Cloud SQL instance {self.instance}",
            )
            for item in page.get("items", []):
                runs.append(
                    BackupRun(
                        str(item["id"]),
                        item.get("status", "UNKNOWN"),
                        item.get("type", ""),
                        _time(item.get("startTime") or item.get("windowStartTime")),
                        _time(item.get("endTime")),
                        item.get("description", ""),
                    )
                )
            token = page.get("nextPageToken")
            if not token:
                return sorted(runs, key=lambda r: r.started or datetime.min.replace(tzinfo=UTC), reverse=True)

    def restore(self, backup_id: str) -> dict[str, Any]:
        """Restore backup run `backup_id` onto the instance (its data is replaced); the finished operation."""
        if backup_id not in {run.id for run in self.backups()}:
            raise NotFoundError(f"Cloud SQL instance {self.instance} has no backup {backup_id}: see `cloudsql backups`")
        body = {
            "restoreBackupContext": {"backupRunId": backup_id, "project": self.project, "instanceId": self.instance}
        }
        started = self._call(
            self.api.instances().restoreBackup(project=self.project, instance=self.instance, body=body),
            f"cannot restore backup {backup_id} onto Cloud SQL instance {self.instance}",
            retries=0,
        )
        return self.wait(started, f"the restore of backup {backup_id} onto {self.instance}")

    def clone(self, name: str, point_in_time: datetime) -> dict[str, Any]:
        """A new instance `name`: the instance as it was at `point_in_time`; the finished operation."""
        at = point_in_time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = {"cloneContext": {"destinationInstanceName": name, "pointInTime": at}}
        started = self._call(
            self.api.instances().clone(project=self.project, instance=self.instance, body=body),
            f"cannot clone Cloud SQL instance {self.instance} to {name} at {at}",
            retries=0,
        )
        return self.wait(started, f"the clone of {self.instance} to {name} at {at}")

    def wait(self, operation: dict[str, Any], what: str) -> dict[str, Any]:
        """Poll the operation until DONE: its error is one line; out of time says it may still finish."""
        deadline = time.monotonic() + self.timeout_seconds
        name = operation["name"]
        while operation.get("status") != "DONE":
            if time.monotonic() >= deadline:
                raise CheckFailed(
                    "cloudsql",
                    f"{what} is still {operation.get('status', 'running')} after {self.timeout_seconds:.0f} s; it may "
                    f"still finish: `gcloud sql operations describe {name} --project {self.project}`",
                )
            time.sleep(self.poll_seconds)
            try:
                operation = self._call(
                    self.api.operations().get(project=self.project, operation=name), f"cannot follow operation {name}"
                )
            except TransientError:
                continue  # the operation goes on in Cloud SQL: asked again until the deadline
        errors = (operation.get("error") or {}).get("errors") or []
        if errors:
            said = "; ".join(f"{e.get('code', 'ERROR')}: {e.get('message', '')}".strip() for e in errors)
            raise CheckFailed("cloudsql", f"{what} failed (operation {name}): {said}")
        return operation


def refuse_unconfirmed(instance: str | None, backup_id: str, confirm: bool) -> None:
    """A restore replaces every database on the instance: only when confirmed."""
    if not confirm:
        raise ConfigError(
            f"restoring backup {backup_id} replaces every database on Cloud SQL instance {instance}: confirm it "
            "(--yes, or tick confirm)"
        )


def _message(exc: Any) -> str:
    """Google's error message, one line."""
    try:
        said = json.loads(exc.content.decode())["error"]["message"]
    except (ValueError, KeyError, TypeError, AttributeError):
        said = str(exc)
    return " ".join(str(said).split())
