"""Prefect's own floor: a flow of as many empty tasks as backup-database runs, in a new process like the CLI's."""

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

TASKS = 7  # clean-leftovers, check-database, dump, verify-and-publish, prune, notify-success, offer-backups


@task(cache_policy=NO_CACHE)
def nothing(step: int) -> int:
    return step


@flow(name="empty")
def empty() -> None:
    for step in range(TASKS):
        nothing(step)


if __name__ == "__main__":
    empty()
