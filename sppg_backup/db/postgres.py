"""PostgreSQL access: connections with clear errors, tool discovery, consistent dumps, row counts."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sppg_backup.errors import ConfigError, NotFoundError, PermanentError, TransientError

CONNECT_TIMEOUT = 10
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PG_LIB = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class Target:
    """Where a database lives, without its password."""

    host: str
    port: int
    database: str
    user: str

    @property
    def label(self) -> str:
        return f"{self.database} on {self.host}:{self.port}"


@dataclass(frozen=True)
class ServerInfo:
    target: Target
    version: str
    version_num: int

    @property
    def major(self) -> int:
        return self.version_num // 10000


def parse(url: str) -> tuple[Target, dict[str, Any]]:
    """Split a URL into a printable Target and libpq parameters."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # psycopg's message quotes the URL, password included: say only which setting is wrong
        raise ConfigError("a database URL does not parse as postgresql://user:password@host:port/database") from None
    port = str(params.get("port") or 5432)
    if not port.isdigit():
        raise ConfigError(f"a database URL names the port {port!r}, which is not a number")
    target = Target(
        host=str(params.get("host") or "localhost"),
        port=int(port),
        database=str(params.get("dbname") or params.get("user") or "postgres"),
        user=str(params.get("user") or os.environ.get("USER", "postgres")),
    )
    return target, params


def with_database(url: str, database: str) -> str:
    """The same server and login, another database, as a postgresql:// URL."""
    return _build(parse(url)[1], database)


def split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password (in the login or a ?password= parameter), and the password."""
    target, params = parse(url)
    password = params.pop("password", None)
    return _build(params, target.database), password


def with_password(url: str, password: str) -> str:
    target, params = parse(url)
    return _build({**params, "password": password}, target.database)


def _build(params: dict[str, Any], database: str) -> str:
    params = dict(params)
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    login = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" if user else "")
    host = str(params.pop("host", ""))
    port = params.pop("port", None)
    params.pop("dbname", None)
    netloc = (f"[{host}]" if ":" in host else host) if host and not host.startswith("/") else ""
    if host.startswith("/"):
        params["host"] = host
    query = ("?" + urlencode(params)) if params else ""
    return f"postgresql://{login}{netloc}{':' + str(port) if port else ''}/{quote(database, safe='')}{query}"


def libpq_env(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo without the password, and an environment carrying it, for pg_dump and pg_restore."""
    _, params = parse(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    return make_conninfo(**params), env


def explain(exc: Exception, target: Target) -> Exception:
    """Turn a libpq error into one line the on-call engineer can act on."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    low = str(exc).lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return PermanentError(
            f"database {target.label} refused login for user {target.user}: wrong password; "
            "check SPPG_BACKUP_DATABASE_URL"
        )
    if "does not exist" in low and "database" in low:
        return NotFoundError(f"database {target.database} does not exist on {target.host}:{target.port}")
    if "role" in low and "does not exist" in low:
        return PermanentError(f"database user {target.user} does not exist on {target.host}:{target.port}")
    if "permission denied" in low:
        return PermanentError(f"database {target.label}: permission denied for user {target.user} ({text})")
    if "pg_hba.conf" in low or "ssl" in low or "certificate" in low:
        return PermanentError(f"database {target.label} refused the connection: {text}")
    return TransientError(f"cannot reach database {target.label}: {text}; is PostgreSQL running?")


@contextmanager
def connect(url: str, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    target, params = parse(url)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        conn = psycopg.connect(**params, autocommit=autocommit)
    except psycopg.Error as exc:
        raise explain(exc, target) from None
    with conn:
        yield conn


def server_info(url: str) -> ServerInfo:
    target, _ = parse(url)
    with connect(url) as conn:
        row = conn.execute("SELECT current_setting('server_version'), current_setting('server_version_num')").fetchone()
    assert row is not None
    return ServerInfo(target, str(row[0]).split()[0], int(row[1]))


def list_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """User tables whose rows pg_dump writes: ordinary and partitioned, outside system schemas and extensions."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1, 2
        """
    ).fetchall()
    return [(str(schema), str(name)) for schema, name in rows]


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact row count of every table, as `schema.table`."""
    counts: dict[str, int] = {}
    for schema, name in list_tables(conn):
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{name}"] = int(row[0]) if row else 0
    return counts


def tool_version(path: str) -> tuple[int, str]:
    done = subprocess.run([path, "--version"], capture_output=True, text=True)
    out = done.stdout
    if done.returncode != 0:
        raise PermanentError(f"{path} --version failed (exit {done.returncode}): {done.stderr.strip()}")
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        raise PermanentError(f"cannot read the version of {path}: {out.strip()}")
    return int(match.group(1)), match.group(0)


def find_tool(name: str, server_major: int, bin_dir: Path | None = None) -> tuple[str, str]:
    """The pg_dump/pg_restore to use: SPPG_BACKUP_PG_BIN_DIR, else the lowest installed major >= server's."""
    candidates: list[str] = []
    if bin_dir is not None:
        candidates.append(str(bin_dir / name))
    else:
        majors = sorted(int(p.name) for p in PG_LIB.glob("*") if p.name.isdigit()) if PG_LIB.is_dir() else []
        candidates += [str(PG_LIB / str(m) / "bin" / name) for m in majors if m >= server_major]
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for path in candidates:
        if os.access(path, os.X_OK):
            major, version = tool_version(path)
            if major >= server_major:
                return path, version
    raise PermanentError(
        f"{name} for PostgreSQL {server_major} or newer not found: install postgresql-client-{server_major} "
        "or set SPPG_BACKUP_PG_BIN_DIR"
    )


class StderrTail:
    """Reads a process's stderr in a thread, keeping the last lines for the error message."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=20)
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def text(self) -> str:
        self._thread.join(5)
        return "; ".join(line for line in self.lines if line)


@dataclass
class DumpInfo:
    server: ServerInfo
    pg_dump_version: str
    tables: dict[str, int] = field(default_factory=dict)


@contextmanager
def dump(url: str, bin_dir: Path | None = None, lock_wait_seconds: int = 300) -> Iterator[tuple[IO[bytes], DumpInfo]]:
    """Run pg_dump -Fc -Z0 in an exported snapshot; yield its output stream and a DumpInfo.

    Row counts are taken in the same snapshot pg_dump reads, while it runs, so they equal the rows in
    the dump; `tables` is filled when the block exits. pg_dump failing raises there too, so the caller
    must commit what it wrote only after the block ends without error.
    """
    info = server_info(url)
    pg_dump, pg_dump_version = find_tool("pg_dump", info.major, bin_dir)
    conninfo, env = libpq_env(url)
    result = DumpInfo(info, pg_dump_version)
    with connect(url, autocommit=False) as conn, ThreadPoolExecutor(1) as pool:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        proc = subprocess.Popen(
            [
                pg_dump,
                "--format=custom",
                "--compress=0",
                f"--snapshot={snapshot}",
                f"--lock-wait-timeout={lock_wait_seconds * 1000}",
                "--dbname",
                conninfo,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        with contextlib.suppress(OSError):  # a bigger pipe means fewer wake-ups between pg_dump and us
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 1 << 20)
        errors = StderrTail(proc.stderr)
        counting = pool.submit(row_counts, conn)
        failed = False
        try:
            yield proc.stdout, result
        except BaseException:
            failed = True
            proc.kill()
            conn.cancel_safe()  # stop the row counts too: the dump is abandoned
            raise
        finally:
            proc.stdout.close()
            code = proc.wait()
            try:
                tables = counting.result()
            except Exception:
                if not failed:  # a counting error must not hide the error that stopped the dump
                    raise
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
        if code != 0:
            raise PermanentError(f"pg_dump of {info.target.label} failed (exit {code}): {errors.text()}")
        result.tables = tables
