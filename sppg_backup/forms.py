"""Field types for the forms the Prefect UI draws from a flow's parameters: every field editable at once (no
"Property is type None" pick), times typed in WIB."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

WIB = ZoneInfo("Asia/Jakarta")
TIME_PATTERN = r"^$|^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?( ?(WIB|Z|[+-]\d{2}:?\d{2}))?$"
# The first choice of each list: no id, choose by the rules. Ids never start with "newest".
NEWEST = "newest usable backup"
NEWEST_SET = "newest full-system backup"
NEWEST_SNAPSHOT = "newest snapshot (or the newest at 'as of')"
CONFIG_FILE = (
    "The sppg-backup settings file (TOML) to use instead of the worker's (SPPG_BACKUP_CONFIG). Leave empty: the "
    "worker's settings name the database, the storage and the keys."
)


def parse_time(value: Any) -> datetime | None:
    """`2026-12-01 10:30` is WIB; an explicit zone (`+07:00`, `Z`, `WIB`) is kept; empty is none."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=WIB)
    text = str(value).strip()
    if not text:
        return None
    text = re.sub(r" ?WIB$", "", text)
    try:
        moment = datetime.fromisoformat(text.replace(" Z", "Z"))
    except ValueError:
        raise ValueError(f"{value!r} is not a time like 2026-12-01 10:30 (WIB) or 2026-12-01T03:30Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=WIB)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _chosen(value: Any) -> str | None:
    text = _text(value)
    return None if text is None or text.startswith("newest ") else text.split(" ", 1)[0]


def _no_password(value: Any) -> str | None:
    text = _text(value)
    if text and (urlsplit(text).password or re.search(r"[?&]password=", text)):
        raise ValueError(
            "leave the password out of the database URL: it would be kept with the run, in the UI; it is taken "
            "from DATABASE_URL (same server and login) or from the setting TARGET_PASSWORD"
        )
    return text


def _shown(value: Any) -> str:
    return "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)


# A time in the form: a text box, WIB unless a zone is given; None when left empty.
WibTime = Annotated[
    datetime | None,
    BeforeValidator(parse_time),
    PlainSerializer(_shown, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": TIME_PATTERN}),
]

# Text that may be left empty (None), drawn as a plain text box.
Text = Annotated[
    str | None,
    BeforeValidator(_text),
    PlainSerializer(_shown, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string"}),
]

# A choice from a list the UI draws as a dropdown ("<id> · <when> · ..."): its id, or None for a "newest" choice.
Choice = Annotated[
    str | None,
    BeforeValidator(_chosen),
    PlainSerializer(_shown, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string"}),
]

# The config_file parameter of every flow (`config_file: Text = CONFIG_PARAM`): a described text box.
CONFIG_PARAM: Any = Field("", description=CONFIG_FILE)
DRY_RUN_PARAM: Any = Field(False, description="Only list what would be deleted and why; nothing is deleted.")
ONLY_WITH_PITR: Any = Field(
    False,
    description="Skip (the run completes, saying so) unless SPPG_BACKUP_PITR is set: the weekly schedule runs "
    "everywhere, the physical steps only where point-in-time recovery is set up.",
)

# A database URL typed in a form: never with a password (run parameters are stored and shown).
DatabaseUrl = Annotated[
    str | None,
    BeforeValidator(_no_password),
    PlainSerializer(_shown, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string"}),
]
