"""Throwaway PostgreSQL clusters and an ERP-like sample database, for the demo, tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from sppg_backup.db.postgres import PG_LIB
from sppg_backup.ops.limits import LEASES_IN_FILES


def default_bin_dir() -> Path:
    majors = sorted(int(p.name) for p in PG_LIB.glob("*") if p.name.isdigit() and (p / "bin/initdb").exists())
    if not majors:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql: apt-get install postgresql")
    return PG_LIB / str(majors[-1]) / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A private PostgreSQL server on a free loopback port, password login over TCP.

    As root it runs as the `postgres` user, because initdb refuses to run as root.
    """

    def __init__(
        self, base: Path | None = None, bin_dir: Path | None = None, port: int | None = None, fsync: bool = False
    ) -> None:
        self.fsync = fsync  # off for tests (speed); on for benchmarks, as on a real server
        self.bin_dir = bin_dir or default_bin_dir()
        self.base = Path(base) if base else Path(tempfile.mkdtemp(prefix="sppg-pg-"))
        self.data = self.base / "data"
        self.port = port or free_port()
        saved = self.base / "password"
        self.password = saved.read_text().strip() if saved.exists() else secrets.token_hex(8)
        self._user: str | None = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, check=True, capture_output=True, text=True, user=self._user, **kwargs)

    def start(self) -> Cluster:
        self.base.mkdir(parents=True, exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.base / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self._user:
                os.chown(pwfile, pwd.getpwnam(self._user).pw_uid, -1)
            self._run(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
            pwfile.unlink()
            saved = self.base / "password"
            saved.touch(mode=0o600)
            saved.write_text(self.password)
        fsync = "on" if self.fsync else "off"
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=50"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.base / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://postgres:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, remove: bool = True) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                user=self._user,
            )
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)


SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE users (id serial PRIMARY KEY, username text UNIQUE NOT NULL, email text NOT NULL,
    full_name text NOT NULL, role text NOT NULL, is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE schools (id serial PRIMARY KEY, npsn text NOT NULL, name text NOT NULL, district text NOT NULL,
    students integer NOT NULL, location jsonb);
CREATE TABLE suppliers (id serial PRIMARY KEY, name text NOT NULL, npwp text, phone text, address text,
    metadata jsonb);
CREATE TABLE products (id serial PRIMARY KEY, sku text UNIQUE NOT NULL, name text NOT NULL,
    category text NOT NULL, unit text NOT NULL, price numeric(14,2) NOT NULL, stock integer NOT NULL,
    nutrition jsonb);
CREATE TABLE purchase_orders (id bigserial PRIMARY KEY, supplier_id integer REFERENCES suppliers,
    ordered_at timestamptz NOT NULL, status text NOT NULL, total numeric(16,2) NOT NULL, notes text);
CREATE TABLE order_items (id bigserial PRIMARY KEY, order_id bigint REFERENCES purchase_orders,
    product_id integer REFERENCES products, quantity numeric(12,3) NOT NULL, unit_price numeric(14,2) NOT NULL);
CREATE TABLE meal_distributions (id bigserial PRIMARY KEY, school_id integer REFERENCES schools,
    served_on date NOT NULL, portions integer NOT NULL, menu jsonb NOT NULL, notes text);
CREATE TABLE invoices (id bigserial PRIMARY KEY, order_id bigint REFERENCES purchase_orders,
    number text NOT NULL, issued_at timestamptz NOT NULL, amount numeric(16,2) NOT NULL, document bytea);
CREATE TABLE audit_logs (id bigserial PRIMARY KEY, at timestamptz NOT NULL, user_id integer,
    action text NOT NULL, payload jsonb);
"""

WORDS = (
    "'beras','ayam','telur','tahu','tempe','sayur bayam','wortel','susu','pisang','jeruk','ikan lele',"
    "'daging sapi','kacang hijau','minyak goreng','gula','garam','bawang merah','bawang putih','cabai',"
    "'kentang','jagung','roti','mie','kangkung','buncis','semangka','pepaya','apel','melon','kecap'"
)

# One unit of scale is about 2.7 MB of table data (about 1 MB as a compressed dump).
FILL = """
INSERT INTO users (username, email, full_name, role, created_at)
SELECT 'user' || g, 'user' || g || '@sppg.example.id', initcap(w[1 + g % 30]) || ' ' || initcap(w[1 + (g * 7) % 30]),
       (ARRAY['admin','gudang','ahli_gizi','keuangan','kepala_sppg'])[1 + g % 5], now() - g * interval '1 hour'
FROM generate_series({u0}, {u1}) g, (SELECT ARRAY[{words}] AS w) x;
INSERT INTO schools (npsn, name, district, students, location)
SELECT lpad((20100000 + g)::text, 8, '0'), 'SD Negeri ' || g || ' ' || initcap(w[1 + g % 30]),
       (ARRAY['Cibinong','Bojonggede','Citeureup','Sukaraja','Babakan Madang'])[1 + g % 5], 80 + g % 600,
       jsonb_build_object('lat', -6.4 + random() / 10, 'lon', 106.8 + random() / 10, 'kelurahan', w[1 + g % 30])
FROM generate_series({s0}, {s1}) g, (SELECT ARRAY[{words}] AS w) x;
INSERT INTO suppliers (name, npwp, phone, address, metadata)
SELECT 'CV ' || initcap(w[1 + g % 30]) || ' Makmur ' || g, lpad((g * 7919)::text, 15, '0'), '08' || (1000000000 + g),
       'Jl. ' || initcap(w[1 + (g * 3) % 30]) || ' No. ' || g % 200 || ', Bogor',
       jsonb_build_object('rating', g % 5 + 1, 'halal', g % 3 <> 0, 'contact', 'Bapak ' || initcap(w[1 + g % 30]))
FROM generate_series({s0}, {s1}) g, (SELECT ARRAY[{words}] AS w) x;
INSERT INTO products (sku, name, category, unit, price, stock, nutrition)
SELECT 'SKU-' || lpad(g::text, 7, '0'), initcap(w[1 + g % 30]) || ' grade ' || (g % 4 + 1),
       (ARRAY['bahan pokok','protein','sayuran','buah','bumbu'])[1 + g % 5],
       (ARRAY['kg','liter','butir','ikat'])[1 + g % 4],
       round((1000 + random() * 150000)::numeric, 2), (random() * 5000)::int,
       jsonb_build_object('kalori', (random() * 400)::int, 'protein_g', round((random() * 30)::numeric, 1),
                          'lemak_g', round((random() * 20)::numeric, 1))
FROM generate_series({p0}, {p1}) g, (SELECT ARRAY[{words}] AS w) x;
INSERT INTO purchase_orders (supplier_id, ordered_at, status, total, notes)
SELECT 1 + (g * 13) % {s1}, now() - (g % 700) * interval '1 day' - (g % 86400) * interval '1 second',
       (ARRAY['draft','approved','received','paid','cancelled'])[1 + g % 5], round((random() * 25000000)::numeric, 2),
       'Pengadaan ' || w[1 + g % 30] || ' dan ' || w[1 + (g * 7) % 30] || ' untuk menu minggu ke-' || g % 52
FROM generate_series({o0}, {o1}) g, (SELECT ARRAY[{words}] AS w) x;
INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT 1 + g / 4, 1 + (g * 31) % {p1}, round((random() * 500)::numeric, 3),
       round((1000 + random() * 150000)::numeric, 2)
FROM generate_series({i0}, {i1}) g;
INSERT INTO meal_distributions (school_id, served_on, portions, menu, notes)
SELECT 1 + g % {s1}, current_date - g % 365, 80 + (g * 17) % 600,
       jsonb_build_object('karbohidrat', w[1 + g % 3], 'lauk', w[1 + (g * 3) % 30], 'sayur', w[1 + (g * 5) % 30],
                          'buah', w[1 + (g * 11) % 30], 'kalori', 550 + g % 200, 'verified_by', 'ahli_gizi'),
       CASE WHEN g % 9 = 0 THEN 'Porsi tambahan untuk kegiatan sekolah' END
FROM generate_series({m0}, {m1}) g, (SELECT ARRAY[{words}] AS w) x;
INSERT INTO invoices (order_id, number, issued_at, amount, document)
SELECT g, 'INV/SPPG/' || (2024 + g % 3) || '/' || lpad(g::text, 7, '0'), now() - (g % 700) * interval '1 day',
       round((random() * 25000000)::numeric, 2),
       convert_to('%PDF-1.4 invoice INV-' || g || ' PT SPPG ', 'UTF8') || gen_random_bytes(64 + g % 700)
FROM generate_series({o0}, {o1}) g;
INSERT INTO audit_logs (at, user_id, action, payload)
SELECT now() - g * interval '1 minute', 1 + g % {u1}, (ARRAY['login','create','update','approve','delete'])[1 + g % 5],
       jsonb_build_object('ip', '10.0.' || g % 255 || '.' || (g * 7) % 255, 'table', 'purchase_orders',
                          'record', 1 + g % {o1}, 'note', md5(g::text))
FROM generate_series({a0}, {a1}) g;
"""

PER_SCALE = {"u": 20, "s": 10, "p": 60, "o": 1000, "m": 2000, "a": 4000}


def fill_sample(url: str, scale: int = 1, batch: int = 50) -> dict[str, int]:
    """Create and fill the ERP-like sample schema; returns rows per table. Runs in batches of `batch` scale."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        done = 0
        while done < scale:
            step = min(batch, scale - done)
            bounds: dict[str, Any] = {"words": WORDS}
            for key, per in PER_SCALE.items():
                bounds[f"{key}0"] = done * per + 1
                bounds[f"{key}1"] = (done + step) * per
            bounds["i0"], bounds["i1"] = (bounds["o0"] - 1) * 4, bounds["o1"] * 4 - 1
            conn.execute(FILL.format(**bounds))
            done += step
        conn.execute("ANALYZE")
        from sppg_backup.db.postgres import row_counts

        return row_counts(conn)


def sample_database(cluster: Cluster, name: str, scale: int) -> str:
    """The sample database `name` on `cluster`, generated only when it is not there yet; its URL."""
    url = cluster.url(name)
    try:
        psycopg.connect(url).close()
    except psycopg.OperationalError:
        url = cluster.create_database(name)
        started = time.perf_counter()
        fill_sample(url, scale)
        print(f"generated scale {scale} in {time.perf_counter() - started:.0f} s")
    return url


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path | None = None, seconds: float = 30) -> None:
    """Until `url` answers: a RuntimeError (with the end of `log`) when `proc` ends or time runs out first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise RuntimeError(f"{url} did not answer:\n{tail}") from None
            time.sleep(0.2)


def prefect_database(cluster: Cluster, name: str = "prefect") -> str:
    """A database of its own for a Prefect server, as PREFECT_API_DATABASE_CONNECTION_URL wants it."""
    url = cluster.create_database(name)
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@contextlib.contextmanager
def prefect_server(home: Path, database: str | None = None, **settings: str) -> Iterator[str]:
    """A real `prefect server` process (on the PostgreSQL `database` from prefect_database, else SQLite under
    `home`; extra PREFECT_* settings); yields its API URL. Runs the CLI, imports nothing."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": api}
    if database:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
    env["PREFECT_UI_API_URL"] = api  # else the UI in a browser looks for the API on port 4200
    env.setdefault(*LEASES_IN_FILES)
    env.update(settings)
    prefect = str(Path(sys.executable).with_name("prefect"))
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    try:
        wait_for(api + "/health", proc, home / "server.log", 90)
        yield api
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
