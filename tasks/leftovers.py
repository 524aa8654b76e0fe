"""What runs killed at any moment left behind: scratch folders (decrypted dumps), temporary upload files, claimed
ids, scratch databases. Every flow removes the scratch folders no live run holds before it starts (so plaintext never
outlives its run by more than the next run of any flow); the flows that make the others remove those too; the
health check (and `status`) reports what is left."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from sppg_backup import claims, keys
from sppg_backup.db import scratch_db
from sppg_backup.ops import scratch
from sppg_backup.settings import Settings
from sppg_backup.tasks.common import destinations, root_run

log = logging.getLogger("sppg_backup.leftovers")


def _logger() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return log


def _each(found: list[str], what: str, step: Callable[[], Iterable[object]]) -> None:
    try:
        found.extend(str(item) for item in step())
    except Exception as exc:  # cleaning must never fail the run it starts; said in the run's log, not the terminal
        _logger().warning("could not look for %s left by earlier runs: %s", what, exc)


def leftovers(settings: Settings, uploads: bool, servers: tuple[str, ...], remove: bool) -> list[str]:
    found: list[str] = []
    if remove:  # this run's own folders stay: a Retry finds its downloads there
        _each(found, "scratch folders", partial(scratch.clean_abandoned, settings.scratch_root, True, root_run()))
    else:
        _each(found, "scratch folders", lambda: scratch.abandoned(settings.scratch_root))
    if uploads:
        for storage in destinations(settings).all:
            _each(found, "temporary uploads", partial(storage.abandoned_uploads, remove))
        stale = partial(claims.abandoned_claims, destinations(settings).storage, keys.CLAIMED, remove)
        _each(found, "claimed ids", stale)
    for server in dict.fromkeys(servers):
        _each(found, "scratch databases", partial(scratch_db.abandoned, server, remove))
    return found


@task(name="clean-leftovers", cache_policy=NO_CACHE, timeout_seconds=600)
def clean_leftovers(settings: Settings, uploads: bool = False, servers: tuple[str, ...] = ()) -> list[str]:
    """Remove what killed runs left (never a live run's work); what was removed."""
    removed = leftovers(settings, uploads, servers, remove=True)
    if removed:
        _logger().warning("removed what killed runs left: %s", ", ".join(removed))
    return removed
