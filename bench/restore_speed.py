"""Restore speed and memory: `restore db` of a backup of the ~1 GB benchmark database against bare pg_restore.

    .venv/bin/python bench/restore_speed.py [--scale 400]

Uses (and keeps) the cluster of bench/backup_speed.py --keep in .bench/pg-<scale>, generating it when missing.
Times, in one run: bare `pg_restore -j2` and `-j1` from a plain dump file on local disk (written by
`pg_dump -Fc -Z0 -f`), the streamed pipe `age -d | zstd -d | pg_restore`, our restore through the core
(download, sha256, decrypt and decompress into a scratch file while two pg_restore processes load tables from
it into a new database, indexes and constraints, row counts, swap), and the whole `sppg-backup restore db` as a
Prefect flow against a running server. Run it a few times: on 2 cores the figures vary by about 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import timed
from sppg_backup.db import (
    catalog,
    dump,
    postgres,
)
from sppg_backup.sandbox.clusters import Cluster, prefect_server, sample_database
from sppg_backup.settings import load_settings
from sppg_backup.storage import destinations
from sppg_backup.stream.crypto import generate_key_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=400)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    out = workdir / "restore"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cluster = Cluster(workdir / f"pg-{args.scale}", fsync=True).start()  # a restore writes: fsync as in production
    try:
        url = sample_database(cluster, "erp_bench", args.scale)
        with postgres.connect(url) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        print(f"database: {size / 1e6:.0f} MB (pg_database_size)")
        key = out / "key.txt"
        public = generate_key_file(key)
        env_vars = {
            "SPPG_BACKUP_DATABASE_URL": url,
            "SPPG_BACKUP_STORAGE_URL": (out / "storage").as_uri(),
            "SPPG_BACKUP_LOCAL_DIR": "",
            "SPPG_BACKUP_AGE_RECIPIENTS": public,
            "SPPG_BACKUP_AGE_IDENTITY_FILE": str(key),
            "SPPG_BACKUP_AUDIT_LOG": str(out / "audit.jsonl"),
            "SPPG_BACKUP_SCRATCH_DIR": str(out / "scratch"),
            "SPPG_BACKUP_RESTORE_JOBS": "2",
            "SPPG_BACKUP_DRILL_CHECKS": "[]",
        }
        os.environ.update(env_vars)
        settings = load_settings(local_dir=None)
        dest = destinations.open_destinations(settings)
        manifest = dump.dump(settings, dest, dump.reserve_id(dest.storage, datetime.now(UTC)))
        catalog.publish(dest, manifest)
        stored = out / "storage" / manifest.data_key
        conninfo, env = postgres.libpq_env(url)
        env.update(env_vars)
        env["PATH"] = f"{cluster.bin_dir}:{env['PATH']}"
        plain = out / "plain.dump"
        timed(f"pg_dump -Fc -Z0 -f {plain} '{conninfo}'", env, True)

        def settle() -> None:
            """Flush what the previous contender left dirty, so it does not slow the next one down."""
            with postgres.connect(url) as conn:
                conn.execute("CHECKPOINT")
            os.sync()

        def fresh(name: str) -> str:
            cluster.drop_database(name)
            settle()
            return cluster.create_database(name)

        def target(name: str) -> str:
            cluster.drop_database(name)
            settle()
            return postgres.libpq_env(cluster.url(name))[0]

        results: dict[str, tuple[float, int]] = {}
        for jobs in (2, 1):
            dsn = postgres.libpq_env(fresh(f"bare_j{jobs}"))[0]
            results[f"bare pg_restore -j{jobs} (plain file)"] = timed(
                f"pg_restore --no-owner -j{jobs} -d '{dsn}' {plain}", env, True
            )
        dsn = postgres.libpq_env(fresh("piped"))[0]
        results["age -d | zstd -d | pg_restore"] = timed(
            f"set -o pipefail; age -d -i {key} {stored} | zstd -d | pg_restore --no-owner -d '{dsn}'", env, True
        )
        core = [sys.executable, str(ROOT / "bench" / "run_restore_core.py"), cluster.url("ours_core")]
        target("ours_core")
        results["restore, core (download..swap)"] = timed(core, env)
        with prefect_server(workdir / "prefect") as api:
            target("ours_flow")
            cli = [
                str(Path(sys.executable).with_name("sppg-backup")),
                "restore",
                "db",
                manifest.id,
                "--target-url",
                cluster.url("ours_flow"),
                "--stop-services",
                "",
                "--no-safety-backup",
            ]
            results["sppg-backup restore db (Prefect flow)"] = timed(cli, {**env, "PREFECT_API_URL": api})
        floor = results["bare pg_restore -j2 (plain file)"][0]
        print(f"\n{'contender':42} {'seconds':>8} {'x -j2':>6} {'peak MB':>8}")
        for name, (seconds, peak) in results.items():
            print(f"{name:42} {seconds:8.1f} {seconds / floor:6.2f} {peak / 1e6:8.0f}")
        for name in ("bare_j2", "bare_j1", "piped", "ours_core", "ours_flow"):
            cluster.drop_database(name)
    finally:
        cluster.stop(remove=False)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
