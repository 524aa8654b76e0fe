"""Backup speed and memory on a generated ERP database (about 1 GB by default).

    .venv/bin/python bench/backup_speed.py [--scale 440] [--keep]

Times, side by side in one run: `sppg-backup backup db` (dump, compress, encrypt, hash, store to file://
storage and the local copy, manifest) against (a) pg_dump -Fc -Z0 > /dev/null, (b) the guide's
pg_dump | gzip > file, (c) pg_dump -Fc -Z0 | zstd -T0 | age -r KEY > file; and the peak memory (sum of
RSS over every process of the backup) sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import timed
from sppg_backup.db import postgres
from sppg_backup.sandbox.clusters import Cluster, prefect_server, sample_database
from sppg_backup.stream.crypto import generate_key_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=400, help="sample data scale (400 is about 950 MB)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's data for the next run")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cluster_dir = workdir / f"pg-{args.scale}"
    cluster = Cluster(cluster_dir if args.keep else Path(tempfile.mkdtemp(prefix="sppg-bench-")))
    cluster.start()
    try:
        url = sample_database(cluster, "erp_bench", args.scale)
        with postgres.connect(url) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        print(f"database: {size / 1e6:.0f} MB (pg_database_size)")

        key = workdir / "bench-key.txt"
        key.unlink(missing_ok=True)
        public = generate_key_file(key)
        conninfo, env = postgres.libpq_env(url)
        pg_dump = f"{cluster.bin_dir}/pg_dump"
        env["PATH"] = f"{cluster.bin_dir}:{env['PATH']}"

        # warm the cache once so the first contender is not penalised
        timed(f"{pg_dump} -Fc -Z0 '{conninfo}' > /dev/null", env, shell=True)
        results: dict[str, tuple[float, int]] = {}
        results["(a) pg_dump -Fc -Z0 > /dev/null"] = timed(f"{pg_dump} -Fc -Z0 '{conninfo}' > /dev/null", env, True)
        results["(b) pg_dump | gzip > file"] = timed(f"{pg_dump} '{conninfo}' | gzip > {out}/guide.sql.gz", env, True)
        by_hand = f"set -o pipefail; {pg_dump} -Fc -Z0 '{conninfo}' | zstd -q -T0 {{level}} | age -r {public} > {{out}}"
        results["(c) pg_dump -Fc -Z0 | zstd -T0 | age"] = timed(
            by_hand.format(level="", out=out / "byhand.zst.age"), env, True
        )
        results["(c1) the same with zstd -1 (our level)"] = timed(
            by_hand.format(level="-1", out=out / "byhand1.zst.age"), env, True
        )
        backup_env = {
            **env,
            "SPPG_BACKUP_DATABASE_URL": url,
            "SPPG_BACKUP_STORAGE_URL": (out / "storage").as_uri(),
            "SPPG_BACKUP_LOCAL_DIR": str(out / "local"),
            "SPPG_BACKUP_AGE_RECIPIENTS": public,
            "SPPG_BACKUP_AUDIT_LOG": str(out / "audit.jsonl"),
        }
        core = [sys.executable, str(ROOT / "bench" / "run_backup_core.py")]
        results["backup db: dump..manifest (core)"] = timed(core, backup_env)
        with prefect_server(workdir / "prefect") as api:
            cli = [str(Path(sys.executable).with_name("sppg-backup")), "backup", "db"]
            results["sppg-backup backup db (Prefect flow)"] = timed(cli, {**backup_env, "PREFECT_API_URL": api})
            empty = [sys.executable, str(ROOT / "bench" / "empty_flow.py")]
            runs = [timed(empty, {**backup_env, "PREFECT_API_URL": api}) for _ in range(3)]
            results["an empty flow of as many tasks (Prefect)"] = min(runs)
        python = min(timed([sys.executable, "-c", "pass"], env)[0] for _ in range(3))
        sizes = {
            "(b)": (out / "guide.sql.gz").stat().st_size,
            "(c)": (out / "byhand.zst.age").stat().st_size,
            "(c1)": (out / "byhand1.zst.age").stat().st_size,
            "backup db": min(p.stat().st_size for p in (out / "storage" / "db").glob("*.age")),
        }
        floor = results["(a) pg_dump -Fc -Z0 > /dev/null"][0]
        print(f"\n{'contender':45} {'seconds':>8} {'x (a)':>6} {'peak MB':>8}")
        for name, (seconds, peak) in results.items():
            print(f"{name:45} {seconds:8.1f} {seconds / floor:6.2f} {peak / 1e6:8.0f}")
        print("\nstored sizes: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()))
        overhead = results["sppg-backup backup db (Prefect flow)"][0] - results["backup db: dump..manifest (core)"][0]
        # An empty flow in its own process pays what the flow adds to the core: Prefect's import, its engine, its
        # task runs (the interpreter's start is in both, so it is taken off once).
        prefect_floor = results["an empty flow of as many tasks (Prefect)"][0] - python
        print(f"the flow's fixed cost over the core: {overhead:.1f} s (target under 1.5 s)")
        print(f"  Prefect's own (an empty flow of as many tasks in a new process, best of 3): {prefect_floor:.1f} s")
        print(f"  ours (imports, leftovers, prune, report, the form's list): {overhead - prefect_floor:+.1f} s")
    finally:
        cluster.stop(remove=not args.keep)


if __name__ == "__main__":
    main()
