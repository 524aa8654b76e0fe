"""The automations of automations.yaml (beside prefect.yaml) onto the server, by name: applied again, each is
updated in place, never doubled. The crash alert's notification goes through a Prefect notification block the
server sends itself (the worker that would send ours is the one that died)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import get_client
from prefect.blocks.notifications import SlackWebhook
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr, ValidationError

from sppg_backup.deployments.serve import prefect_yaml
from sppg_backup.errors import ConfigError

BLOCK = "sppg-backup-crashed"
MIN_CRASH_AFTER = 75  # two heartbeats at Prefect's shortest interval (30 s), and the server's 5 s granularity


def _automations_yaml() -> Path:
    """Beside prefect.yaml, in the checkout (an installed package has neither)."""
    return prefect_yaml().parent / "automations.yaml"


def crash_block(urls: list[str]) -> tuple[Any, str]:
    """The block the server notifies through: Prefect's apprise block (its Slack type takes any apprise URL, and
    a comma-separated list of them), and who it tells. Without URLs the block applied before stays: a deploy from a
    shell without the settings must not silence the on-call phone."""
    if urls:
        block = SlackWebhook(url=SecretStr(",".join(urls)), notify_type="failure")
        return block.save(BLOCK, overwrite=True), f"{len(urls)} notification URLs are told"
    with get_client(sync_client=True) as client:
        try:
            found = client.read_block_document_by_name(BLOCK, "slack-webhook")
        except ObjectNotFound:
            return None, "nobody is told (no NOTIFY_*_URLS in these settings)"
    return found.id, f"the URLs of the block {BLOCK} applied before are told (none in these settings)"


def automations(crash_after: int, block_id: Any) -> list[AutomationCore]:
    """automations.yaml with `within` set to `crash_after` and the notification sent through `block_id` (left out
    without one)."""
    if crash_after < MIN_CRASH_AFTER:
        raise ConfigError(f"--crash-after {crash_after}: at least {MIN_CRASH_AFTER} s (two heartbeats of 30 s)")
    made = []
    for entry in yaml.safe_load(_automations_yaml().read_text())["automations"]:
        entry["trigger"]["within"] = crash_after
        actions = []
        for action in entry["actions"]:
            action = {
                k: v.replace("{within}", str(crash_after)) if isinstance(v, str) else v for k, v in action.items()
            }
            if action["type"] == "send-notification":
                if block_id is None:
                    continue
                action["block_document_id"] = str(block_id)
            actions.append(action)
        entry["actions"] = actions
        try:
            made.append(AutomationCore.model_validate(entry))
        except ValidationError as exc:
            raise ConfigError(f"automations.yaml: {entry.get('name')}: {exc.errors()[0]['msg']}") from None
    return made


def apply_automations(crash_after: int, urls: list[str]) -> tuple[list[str], str]:
    """Create or update each automation by name (duplicates a hand-made copy left are removed); their names, and
    who the crash alert tells."""
    block, told = crash_block(urls)
    wanted = automations(crash_after, block)
    with get_client(sync_client=True) as client:
        for automation in wanted:
            found = client.read_automations_by_name(automation.name)
            if found:
                client.update_automation(found[0].id, automation)
                for extra in found[1:]:
                    client.delete_automation(extra.id)
            else:
                client.create_automation(automation)
    return [a.name for a in wanted], told
