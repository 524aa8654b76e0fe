"""Notifications through apprise URLs (email, Slack, SMS...): a failure to notify never fails a backup."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

from sppg_backup.settings import mask_url

log = logging.getLogger(__name__)


class _Hide(logging.Filter):
    """apprise logs what it rejects ("An invalid Slack Token (xoxb-...) was specified"): the parts of our
    notification URLs are masked in every apprise record, whatever handler shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in sorted(self.secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        record.msg, record.args = message, ()
        return True


_hide = _Hide()
logging.getLogger("apprise").addFilter(_hide)


def _fragments(url: str) -> set[str]:
    """Every piece of a URL that may be a token or password (apprise URLs carry them in any part)."""
    parts = urlsplit(url)
    pieces = [parts.netloc, parts.username, parts.password, parts.hostname, parts.path, *parts.path.split("/")]
    pieces += [value for _, value in parse_qsl(parts.query)]
    return {p for p in pieces if p and len(p) >= 4}


def send(urls: list[str], title: str, body: str, ok: bool) -> bool:
    """Send to every URL; returns True when all were delivered. Errors are logged, not raised."""
    if not urls:
        return True
    import apprise  # a run with nothing to notify does not pay for loading every plugin

    sender = apprise.Apprise()
    delivered = True
    for url in urls:
        _hide.secrets |= _fragments(url)
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
