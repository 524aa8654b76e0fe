"""A local HTTP fake of the Cloud SQL Admin API v1 (Cloud SQL cannot run here): the four calls we make, each
request recorded, operations that finish, fail or never finish as the test sets. It stands in for Google only;
the client library, its discovery document, HTTP and JSON are the real ones."""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BACKUPS = [
    {
        "id": "1701388800000",
        "status": "SUCCESSFUL",
        "type": "AUTOMATED",
        "startTime": "2026-12-01T19:00:03.120Z",
        "endTime": "2026-12-01T19:04:10.500Z",
        "description": "",
    },
    {
        "id": "1701475200000",
        "status": "SUCCESSFUL",
        "type": "ON_DEMAND",
        "startTime": "2026-12-02T19:00:02.010Z",
        "endTime": "2026-12-02T19:03:55.000Z",
        "description": "before the upgrade",
    },
]


class FakeCloudSql:
    """`outcome`: "done" (an operation finishes on the second poll), "error" (it ends with an error) or "hang"."""

    def __init__(self, project: str = "erp-project", instance: str = "erp-sppg-db") -> None:
        self.project, self.instance = project, instance
        self.outcome = "done"
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        self.operations: dict[str, dict[str, Any]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def _operation(self, kind: str) -> dict[str, Any]:
        name = str(uuid.uuid4())
        self.operations[name] = {"polls": 0, "kind": kind}
        return {
            "kind": "sql#operation",
            "name": name,
            "operationType": kind,
            "status": "PENDING",
            "targetId": self.instance,
            "targetProject": self.project,
        }

    def _poll(self, name: str) -> tuple[int, dict[str, Any]]:
        if name not in self.operations:
            return 404, {"error": {"code": 404, "message": f"The Cloud SQL operation {name} does not exist."}}
        op = self.operations[name]
        op["polls"] += 1
        body = {"kind": "sql#operation", "name": name, "operationType": op["kind"], "status": "RUNNING"}
        if self.outcome == "hang" or op["polls"] < 2:
            return 200, body
        body.update(status="DONE", endTime="2026-12-04T03:10:00.000Z")
        if self.outcome == "error":
            body["error"] = {
                "kind": "sql#operationErrors",
                "errors": [
                    {"kind": "sql#operationError", "code": "INTERNAL_ERROR", "message": "the backup could not be read"}
                ],
            }
        return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((self.command, parts.path, body, parse_qs(parts.query)))
                here = f"/v1/projects/{fake.project}"
                found = re.fullmatch(
                    rf"{re.escape(here)}/instances/([^/]+)/(backupRuns|restoreBackup|clone)", parts.path
                )
                if found and found.group(1) != fake.instance:
                    return self._answer(
                        404, {"error": {"code": 404, "message": "The Cloud SQL instance does not exist."}}
                    )
                if found and found.group(2) == "backupRuns" and self.command == "GET":
                    return self._answer(200, {"kind": "sql#backupRunsList", "items": BACKUPS})
                if found and found.group(2) == "restoreBackup" and self.command == "POST":
                    return self._answer(200, fake._operation("RESTORE_VOLUME"))
                if found and found.group(2) == "clone" and self.command == "POST":
                    name = body.get("cloneContext", {}).get("destinationInstanceName")
                    if name == fake.instance:
                        return self._answer(
                            409, {"error": {"code": 409, "message": "The Cloud SQL instance already exists."}}
                        )
                    return self._answer(200, fake._operation("CLONE"))
                op = re.fullmatch(rf"{re.escape(here)}/operations/([^/]+)", parts.path)
                if op and self.command == "GET":
                    return self._answer(*fake._poll(op.group(1)))
                return self._answer(
                    403 if not parts.path.startswith(here) else 404, {"error": {"code": 403, "message": "not allowed"}}
                )

            do_GET = do_POST = _route  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
