"""gcp-storage-emulator plus the one GCS behaviour it lacks and the tests need: an upload with
ifGenerationMatch=0 (create only if there is no live object) answers 412 when the object exists, as real GCS
does. Everything else is the emulator's own. Run as `python -m tests.gcs_emulator start ...`."""

from __future__ import annotations

import sys
import threading
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_lock = threading.Lock()
_insert = objects.insert


def insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
    if request.query.get("ifGenerationMatch") != ["0"]:
        return _insert(request, response, storage, *args, **kwargs)
    with _lock:
        name = (request.query.get("name") or [None])[0]
        if name is None and isinstance(request.data, dict):
            name = request.data.get("meta", {}).get("name")
        try:
            storage.get_file_obj(request.params["bucket_name"], name)
        except NotFound:
            return _insert(request, response, storage, *args, **kwargs)
        response.status = HTTPStatus.PRECONDITION_FAILED
        response.json(
            {"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold."}}
        )
        return None


objects.insert = insert  # before the server module builds its routing table from it

if __name__ == "__main__":
    from gcp_storage_emulator.__main__ import main

    sys.exit(main(sys.argv[1:]))
