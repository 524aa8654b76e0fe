"""What a person checks after a restore: every table's rows, compared by content."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg

from sppg_backup.db import postgres


def table_contents(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of all rows (sorted) of every user table."""
    result = {}
    with postgres.connect(url) as conn:
        for schema, name in postgres.list_tables(conn):
            row = conn.execute(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                f' FROM "{schema}"."{name}" t'
            ).fetchone()
            assert row is not None
            result[f"{schema}.{name}"] = (int(row[0]), str(row[1]))
    return result


def restore_into_new_database(cluster: Any, dump_file: Path) -> str:
    """pg_restore a plain archive into a fresh database; returns its URL."""
    name = "restored_" + uuid.uuid4().hex[:8]
    url = cluster.create_database(name)
    conninfo, env = postgres.libpq_env(url)
    subprocess.run(
        [str(cluster.bin_dir / "pg_restore"), "--no-owner", "--exit-on-error", "--dbname", conninfo, str(dump_file)],
        check=True,
        env=env,
        capture_output=True,
    )
    return str(url)


def drop(cluster: Any, url: str) -> None:
    cluster.drop_database(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
