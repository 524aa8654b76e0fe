"""Notifications through apprise URLs (email, Slack, SMS...): a failure to notify never fails a backup."""

from __future__ import annotations

import logging

import apprise

from .settings import mask_url

log = logging.getLogger(__name__)


def send(urls: list[str], title: str, body: str, ok: bool) -> bool:
    """Send to every URL; returns True when all were delivered. Errors are logged, not raised."""
    if not urls:
        return True
    sender = apprise.Apprise()
    delivered = True
    for url in urls:
        if not sender.add(url):
            log.warning("notification URL %s is not valid for apprise; skipped", mask_url(url))
            delivered = False
    if len(sender) == 0:
        return False
    try:
        sent = sender.notify(
            title=title, body=body, notify_type=apprise.NotifyType.SUCCESS if ok else apprise.NotifyType.FAILURE
        )
    except Exception as exc:  # a plugin bug must not fail the backup
        log.warning("notification failed: %s", exc)
        return False
    if not sent:
        log.warning("notification could not be delivered to every URL")
    return bool(sent) and delivered
