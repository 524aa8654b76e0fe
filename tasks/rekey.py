"""Tasks of rekey-backups: each storage (the storage, the local copies, every replica) re-encrypted to the new
recipients, then optionally read whole with the new key; the rotation reported."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sppg_backup.ops import rekey
from sppg_backup.ops.report import Report
from sppg_backup.settings import Settings, mask_url
from sppg_backup.stream.crypto import identities_from, load_identities
from sppg_backup.tasks.common import audit_trail, destinations
from sppg_backup.tasks.reporting import Entry, tell


def places(settings: Settings) -> list[Any]:
    dest = destinations(settings)
    return [*dest.all, *dest.replicas]


@task(name="check-rotation", cache_policy=NO_CACHE)
def check_rotation(settings: Settings, recipients: list[str], verify_identity: str | None) -> None:
    """The current key opens the backups, the new recipients are new keys, the new private key (if given) is
    one of them."""
    rekey.check_rotation(identities_from(settings.age_identity_file), recipients)
    if verify_identity:
        from sppg_backup.errors import ConfigError

        new = {str(identity.to_public()) for identity in load_identities(Path(verify_identity))}
        if not new & set(recipients):
            raise ConfigError(f"--verify-identity {verify_identity} holds none of the new recipients' keys")


@task(name="rekey-storage", cache_policy=NO_CACHE, timeout_seconds=24 * 3600)
def rekey_place(settings: Settings, index: int, recipients: list[str], dry_run: bool) -> dict[str, Any]:
    """Every encrypted object of storage `index` (places()) re-encrypted, one at a time; each one in the local
    audit trail (a run killed half-way goes on where it stopped when run again)."""
    storage = places(settings)[index]
    trail = audit_trail(settings)  # one local record per object; the summary goes to storage too

    def audit(action: str, key: str, details: dict[str, Any]) -> None:
        trail.record(action, key, "done", **details)

    done = rekey.rekey(storage, identities_from(settings.age_identity_file), recipients, audit, dry_run)
    get_run_logger().info(
        "%s: %d re-encrypted, %d done before, %d manifests updated, %d failed",
        mask_url(storage.url),
        len(done.rewritten),
        len(done.already),
        done.manifests,
        len(done.failed),
    )
    return asdict(done)


@task(name="verify-new-key", cache_policy=NO_CACHE, timeout_seconds=24 * 3600)
def verify_place(settings: Settings, index: int, verify_identity: str) -> list[str]:
    """Every encrypted object of storage `index` read whole with the new private key: the ones it cannot."""
    return rekey.verify_new_key(places(settings)[index], load_identities(Path(verify_identity)))


@task(name="report-rekey", cache_policy=NO_CACHE)
def report_rekey(
    settings: Settings,
    recipients: list[str],
    results: list[dict[str, Any]],
    unreadable: list[str],
    dry_run: bool,
    error: BaseException | None = None,
) -> None:
    rows = "\n".join(
        f"| {mask_url(r['location'])} | {len(r['rewritten'])} | {len(r['already'])} | {r['manifests']} | "
        f"{len(r['failed'])} |"
        for r in results
    )
    table = f"| storage | re-encrypted | done before | manifests | failed |\n|---|---|---|---|---|\n{rows}\n"
    failed = [line for r in results for line in r["failed"]] + unreadable
    new = ", ".join(key[:16] + "..." for key in recipients)
    if error is None and not failed:
        title = "Key rotation planned (dry run)" if dry_run else "Key rotation OK"
        told = Report(
            title=title,
            ok=True,
            summary=(
                f"{sum(len(r['rewritten']) for r in results)} encrypted objects would be re-encrypted to {new}."
                if dry_run
                else f"Every encrypted object is encrypted to {new} only; the old key reads none of them."
            ),
            next_step="run it without --dry-run, with --yes"
            if dry_run
            else f"set SPPG_BACKUP_AGE_RECIPIENTS to {new} (if not yet) and SPPG_BACKUP_AGE_IDENTITY_FILE to the "
            "new key; keep the old private key offline until you are sure",
            details=table,
        )
    else:
        told = Report(
            title="Key rotation FAILED",
            ok=False,
            summary=f"The rotation did not finish: {error or '; '.join(failed[:3])}\nNothing was lost: each "
            "object is whole under the old key or the new one.",
            next_step="fix the cause above and run `sppg-backup rekey` again: it goes on where it stopped",
            details=table,
        )
    counts = {"recipients": recipients, "rewritten": sum(len(r["rewritten"]) for r in results), "failed": failed[:20]}
    entry = None if dry_run else Entry("rekey.summary", "all storages", "ok" if told.ok else "failed", counts)
    tell(settings, "rekey-backups", told, entry)
