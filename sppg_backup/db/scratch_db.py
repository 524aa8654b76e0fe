"""Scratch databases (test restores, restores staged beside their target) are claimed with an advisory lock that
their run holds from before CREATE DATABASE until they are dropped or renamed. A run killed meanwhile loses its
session and so its claim: a later run drops what it left, and never a live run's database."""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any

import psycopg

from sppg_backup.db import postgres

# sppg_<purpose>_<12 hex> and <database>_restoring_<8 hex>: the only names these runs create
SCRATCH_NAME = re.compile(r"sppg_[a-z]+_[0-9a-f]{12}|.+_restoring_[0-9a-f]{8}")
_claims: dict[str, Any] = {}  # name -> the session holding its claim (it is this process's, as the lock is)
_guard = threading.Lock()


def _key(name: str) -> str:
    return "sppg-backup scratch database " + name


def claim(server_url: str, name: str) -> None:
    """Hold the claim on `name` (a database about to be made) until release()."""
    target, params = postgres.parse(postgres.with_database(server_url, "postgres"))
    params.setdefault("connect_timeout", postgres.CONNECT_TIMEOUT)
    try:  # a session of its own: the claim lasts as long as it does
        conn = psycopg.connect(**params, autocommit=True)
    except psycopg.Error as exc:
        raise postgres.explain(exc, target) from None
    try:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [_key(name)])
    except BaseException as exc:
        conn.close()
        raise postgres.explain(exc, target) if isinstance(exc, psycopg.Error) else exc from None
    with _guard:
        _claims[name] = conn


def release(name: str) -> None:
    with _guard:
        conn = _claims.pop(name, None)
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            conn.close()


def abandoned(server_url: str, drop: bool = False) -> list[str]:
    """Scratch databases on the server whose run is gone; dropped with `drop`."""
    found = []
    with postgres.connect(postgres.with_database(server_url, "postgres")) as conn:
        rows = conn.execute(r"SELECT datname FROM pg_database WHERE datname ~ '^sppg_|_restoring_'").fetchall()
        for (name,) in rows:
            if not SCRATCH_NAME.fullmatch(name):
                continue
            held = conn.execute("SELECT NOT pg_try_advisory_lock(hashtext(%s))", [_key(name)]).fetchone()
            if held is None or held[0]:
                continue  # a live run holds it
            try:
                found.append(name)
                if drop:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [_key(name)])
    return found
