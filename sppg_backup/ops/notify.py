"""Notifications through apprise URLs (email, Slack, SMS...): a failure to notify never fails a backup."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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


SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Routes:
    """Who is told what: `every` outcome (successes too), `warning` and critical ones, `critical` ones only
    (an SMS gateway: pages at 3 am for what cannot wait)."""

    every: list[str] = field(default_factory=list)
    warning: list[str] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)
    instance: str | None = None  # one of several ERP instances: its name opens every title

    def tagged(self) -> list[tuple[str, list[str]]]:
        """Each URL with the severities it is told (apprise tags)."""
        return [
            *((url, list(SEVERITIES)) for url in self.every),
            *((url, ["warning", "critical"]) for url in self.warning),
            *((url, ["critical"]) for url in self.critical),
        ]


def severity_of(ok: bool, severity: str | None) -> str:
    return severity or ("info" if ok else "critical")


def send(routes: Routes, title: str, body: str, ok: bool, severity: str | None = None) -> bool:
    """Send to every URL told this severity (default: info when `ok`, else critical); returns True when all of
    them were delivered. Errors are logged, not raised."""
    level = severity_of(ok, severity)
    tagged = [(url, tags) for url, tags in routes.tagged() if level in tags]
    if not tagged:
        return True
    import apprise  # a run with nothing to notify does not pay for loading every plugin

    sender = apprise.Apprise()
    delivered = True
    for url, tags in tagged:
        _hide.secrets |= _fragments(url)
        if not sender.add(url, tag=tags):
            log.warning("notification URL %s is not valid for apprise; skipped", mask_url(url))
            delivered = False
    if len(sender) == 0:
        return False
    if routes.instance:
        title = f"[{routes.instance}] {title}"
    kind = apprise.NotifyType.SUCCESS if ok else apprise.NotifyType.WARNING
    if not ok and level == "critical":
        kind = apprise.NotifyType.FAILURE
    try:
        sent = sender.notify(title=title, body=body, notify_type=kind, tag=level)
    except Exception as exc:  # a plugin bug must not fail the backup
        log.warning("notification failed: %s", exc)
        return False
    if not sent:
        log.warning("notification could not be delivered to every URL")
    return bool(sent) and delivered
