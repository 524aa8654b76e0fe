"""Point-in-time recovery speed and memory on the ~1 GB benchmark cluster, side by side in one run.

    .venv/bin/python bench/pitr_speed.py [--scale 400] [--pgbench-seconds 60] [--repeat 3]

Uses (and keeps) the cluster of bench/backup_speed.py --keep in .bench/pg-<scale>, generating it when missing.
Backups (all with a fast checkpoint, as ours): `pg_basebackup -Ft -D - > /dev/null` (the floor),
`pg_basebackup | zstd -1 | age` by hand,
`pg_dump -Fc -Z0 > /dev/null`, and `sppg-backup backup base` as a Prefect flow. Restores until the server
accepts connections: `age -d | zstd -d | tar -x` + start by hand, bare `pg_restore -j2` of a dump, and
`sppg-backup restore pitr --latest` (download, sha256, unpack, WAL, recovery, promotion, smoke checks). Then
`wal stream` under `pgbench` writing as fast as it can (after a base backup): the archive's lag, sampled every
second; then that base backup and all the WAL after it restored by hand (untar, a restore_command decrypting
and decompressing each segment with age and zstd) and by `restore pitr --latest`. Peak memory is
the sum of RSS over each contender's whole process tree, sampled every 20 ms (it counts the restored server
while `pg_ctl` waits for it), and the largest single process of that tree. Each backup and restore
contender runs `--repeat` times, one after the other; the table shows the median time and the highest peak
(single runs vary by +-2 s here with disk writeback).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import timed_detail as timed
from bench.common import tree_rss
from sppg_backup.db import postgres
from sppg_backup.sandbox.clusters import Cluster, free_port, prefect_server, sample_database
from sppg_backup.stream.crypto import generate_key_file

RESULTS: dict[str, tuple[float, int, int]] = {}  # seconds, peak of the process tree, of its largest process
REPEAT = 3


def repeated(name: str, run: Callable[[], tuple[float, int, int]], after: Callable[[], None] = lambda: None) -> None:
    """Run a contender REPEAT times (`after` cleans up after each run): median seconds, highest peak."""
    runs = []
    for _ in range(REPEAT):
        runs.append(run())
        after()
    seconds = statistics.median(run[0] for run in runs)
    RESULTS[name] = (seconds, max(run[1] for run in runs), max(run[2] for run in runs))


def as_postgres(command: str) -> str:
    """The command as the postgres user when run as root (PostgreSQL refuses root)."""
    return f"su postgres -c {json.dumps(command)}" if os.geteuid() == 0 else command


def start_and_wait(data: Path, port: int, bin_dir: Path) -> str:
    """Start a restored data directory on `port` and wait until it accepts connections (pg_ctl -w)."""
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c archive_mode=off"
    return as_postgres(f"{bin_dir}/pg_ctl -D {data} -l {data.parent}/log -w -t 600 -o '{options}' start")


def stop(data: Path, bin_dir: Path) -> None:
    subprocess.run(as_postgres(f"{bin_dir}/pg_ctl -D {data} -m fast stop"), shell=True, capture_output=True)


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    return folder


def lag_under_load(out: Path, cluster: Cluster, env: dict[str, str], seconds: int, interval: int) -> None:
    """`wal stream` while pgbench writes as fast as it can: the archive's lag each second, and its memory."""
    with postgres.connect(cluster.url("postgres")) as conn:  # an earlier run's, else it counts in the cluster's size
        conn.execute("DROP DATABASE IF EXISTS pgbench_load")
    bench_url = cluster.create_database("pgbench_load")
    pgbench = str(cluster.bin_dir / "pgbench")
    conninfo, pg_env = postgres.libpq_env(bench_url)
    subprocess.run([pgbench, "-i", "-q", "-s", "20", conninfo], env=pg_env, check=True, capture_output=True)
    receiver_env = {**env, "SPPG_BACKUP_WAL_UPLOAD_INTERVAL_SECONDS": str(interval)}
    sppg = str(Path(sys.executable).with_name("sppg-backup"))
    log = open(out / "receiver.log", "w")  # noqa: SIM115 - closed below
    receiver = subprocess.Popen([sppg, "wal", "stream"], env=receiver_env, stderr=log)
    peak, lags, stop_sampling = 0, [], threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop_sampling.is_set():
            peak = max(peak, tree_rss(receiver.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(5)
    # a base backup the WAL below follows, for the restore with WAL afterwards
    timed([sys.executable, str(ROOT / "bench" / "run_base_core.py")], env)
    load = subprocess.Popen(
        [pgbench, "-c", "2", "-j", "2", "-T", str(seconds), "-n", conninfo], env=pg_env, stdout=subprocess.PIPE
    )
    while load.poll() is None:
        done = subprocess.run([sppg, "wal", "status", "--json"], env=receiver_env, capture_output=True, text=True)
        if done.returncode == 0:
            facts = json.loads(done.stdout)
            lags.append((facts["lag_seconds"] or 0.0, facts["lag_bytes"] or 0))
        time.sleep(1)
    said = load.stdout.read().decode() if load.stdout else ""
    tps = [line for line in said.splitlines() if line.startswith("tps")]
    receiver.send_signal(signal.SIGTERM)
    receiver.wait(60)
    stop_sampling.set()
    sampler.join()
    log.close()
    with postgres.connect(bench_url) as conn:
        wal_bytes = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]  # type: ignore[index]
    worst = max(lags, default=(0.0, 0))
    print(f"\nWAL under pgbench -c 2 -T {seconds} ({tps[0] if tps else 'tps unknown'}), upload interval {interval} s:")
    print(f"  lag sampled {len(lags)} times: worst {worst[0]:.1f} s / {worst[1] / 1e6:.0f} MB behind the server, ")
    print(f"  median {sorted(x[0] for x in lags)[len(lags) // 2] if lags else 0:.1f} s; target under {2 * interval} s")
    print(f"  the server wrote {int(wal_bytes) / 1e9:.1f} GB of WAL since initdb; receiver peak {peak / 1e6:.0f} MB")


def restore_with_wal(out: Path, env: dict[str, str], flow_env: dict[str, str], key: Path, bin_dir: Path) -> None:
    """The newest base backup and all the WAL pgbench wrote after it, recovered until the server is promoted: by
    hand (untar, a restore_command that decrypts and decompresses each segment from storage) and ours."""
    storage = out / "storage"
    segments = [p for p in (storage / "wal").iterdir() if ".history" not in p.name]
    newest = sorted((storage / "base").glob("*.tar.zst.age"))[-1]
    restored = fresh(out / "byhand-wal")
    data = fresh(restored / "data")
    hand_key = restored / "key.txt"
    shutil.copy(key, hand_key)
    fetch = restored / "fetch.sh"  # what the README's by-hand restore does, with age and zstd only
    fetch.write_text(
        f'for f in {storage}/wal/"$1".*.zst.age; do [ -f "$f" ] || exit 1; age -d -i {hand_key} "$f" | '
        'zstd -q -d > "$2"; exit; done\n'
    )
    port = free_port()
    settings = [
        f"restore_command = 'sh {fetch} %f %p'",
        "recovery_target_action = 'promote'",
        f"port = {port}",
        "listen_addresses = '127.0.0.1'",
        "archive_mode = 'off'",
    ]
    conf = " && ".join(f"echo {json.dumps(line)} >> {data}/postgresql.auto.conf" for line in settings)
    chown = f"chown -R postgres: {restored}" if os.geteuid() == 0 else "true"
    log = restored / "log"
    promoted = f"until grep -q 'ready to accept connections' {log}; do sleep 0.1; done"
    command = (
        f"set -o pipefail; age -d -i {key} {newest} | zstd -q -d | tar -x -C {data} && {conf} && "
        f"touch {data}/recovery.signal && {chown} && "
        f"{as_postgres(f'{bin_dir}/pg_ctl -D {data} -l {log} start')} > /dev/null && {promoted}"
    )
    hand = timed(command, env, True)
    stop(data, bin_dir)
    shutil.rmtree(restored)
    target = out / "pitr-wal"
    sppg = str(Path(sys.executable).with_name("sppg-backup"))
    ours = timed([sppg, "restore", "pitr", "--latest", "--target-dir", str(target), "--json"], flow_env)
    stop(target / "data", bin_dir)
    shutil.rmtree(target)
    print(f"\nrestore pitr --latest of the base backup taken under load + {len(segments)} WAL segments after it:")
    print(f"  by hand (untar, restore_command age -d | zstd -d each): {hand[0]:.1f} s, peak {hand[1] / 1e6:.0f} MB")
    print(
        f"  sppg-backup restore pitr (Prefect flow): {ours[0]:.1f} s, peak {ours[1] / 1e6:.0f} MB "
        f"(its largest process {ours[2] / 1e6:.0f} MB)"
    )
    print(f"  ours / by hand: {ours[0] / hand[0]:.2f}x")


def print_table() -> None:
    hand_backup = RESULTS["pg_basebackup | zstd -1 | age (by hand)"][0]
    hand_restore = RESULTS["age -d | zstd -d | tar -x + start (by hand)"][0]
    print(f"\n{'contender':52} {'seconds':>8} {'peak MB':>8} {'largest':>8}")
    for name, (seconds, peak, largest) in RESULTS.items():
        print(f"{name:52} {seconds:8.1f} {peak / 1e6:8.0f} {largest / 1e6:8.0f}")
    ours_backup = RESULTS["sppg-backup backup base (Prefect flow)"][0]
    ours_restore = RESULTS["sppg-backup restore pitr --latest (Prefect flow)"][0]
    core_backup = RESULTS["backup base, core (no Prefect)"][0]
    core_restore = RESULTS["restore pitr --latest, core (no Prefect)"][0]
    print(f"backup base / by hand: {ours_backup / hand_backup:.2f}x, core {core_backup / hand_backup:.2f}x")
    print(f"restore pitr / by hand: {ours_restore / hand_restore:.2f}x, core {core_restore / hand_restore:.2f}x")
    print("targets: backup base at most 1.1x by hand, restore pitr --latest at most 1.2x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=400, help="sample data scale (400 is about 950 MB)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--pgbench-seconds", type=int, default=60)
    parser.add_argument("--interval", type=int, default=10, help="WAL_UPLOAD_INTERVAL_SECONDS under load")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each backup and restore contender")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    workdir = args.workdir.resolve()
    out = fresh(workdir / "pitr")
    cluster = Cluster(workdir / f"pg-{args.scale}", fsync=True).start()
    try:
        url = sample_database(cluster, "erp_bench", args.scale)
        with postgres.connect(url) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
            cluster_size = conn.execute("SELECT sum(pg_database_size(datname))::bigint FROM pg_database").fetchone()[0]  # type: ignore[index]
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
        print(f"database: {size / 1e6:.0f} MB, cluster {cluster_size / 1e6:.0f} MB (pg_database_size)")
        key = out / "key.txt"
        public = generate_key_file(key)
        conninfo, env = postgres.libpq_env(url)
        bin_dir = cluster.bin_dir
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
        env.update(
            {
                "SPPG_BACKUP_DATABASE_URL": url,
                "SPPG_BACKUP_STORAGE_URL": (out / "storage").as_uri(),
                "SPPG_BACKUP_LOCAL_DIR": "",
                "SPPG_BACKUP_AGE_RECIPIENTS": public,
                "SPPG_BACKUP_AGE_IDENTITY_FILE": str(key),
                "SPPG_BACKUP_AUDIT_LOG": str(out / "audit.jsonl"),
                "SPPG_BACKUP_STATE_DIR": str(out / "state"),
                "SPPG_BACKUP_PITR": "true",
                "SPPG_BACKUP_SCHEDULED_FLOWS": "",
                "SPPG_BACKUP_DRILL_CHECKS": json.dumps(
                    [{"name": "rows", "sql": "SELECT count(*) > 0 FROM pg_class", "expect": "true"}]
                ),
            }
        )
        basebackup = f"{bin_dir}/pg_basebackup -d '{conninfo}' -Ft -D - -X fetch --checkpoint=fast"
        timed(f"{basebackup} > /dev/null", env, True)  # warm the cache once
        repeated("pg_basebackup -Ft -D - > /dev/null (floor)", lambda: timed(f"{basebackup} > /dev/null", env, True))
        by_hand = out / "byhand.tar.zst.age"
        repeated(
            "pg_basebackup | zstd -1 | age (by hand)",
            lambda: timed(f"set -o pipefail; {basebackup} | zstd -q -1 -T0 | age -r {public} > {by_hand}", env, True),
        )
        repeated("pg_dump -Fc -Z0 > /dev/null", lambda: timed(f"pg_dump -Fc -Z0 '{conninfo}' > /dev/null", env, True))
        sppg = str(Path(sys.executable).with_name("sppg-backup"))
        core = [sys.executable, str(ROOT / "bench" / "run_base_core.py")]
        repeated("backup base, core (no Prefect)", lambda: timed(core, env))
        with prefect_server(workdir / "prefect-pitr") as api:
            flow_env = {**env, "PREFECT_API_URL": api}
            repeated("sppg-backup backup base (Prefect flow)", lambda: timed([sppg, "backup", "base"], flow_env))

            restored = out / "byhand-restored"
            port = free_port()
            unpack = f"age -d -i {key} {by_hand} | zstd -q -d | tar -x -C {restored / 'data'}"
            chown = f"chown -R postgres: {restored}" if os.geteuid() == 0 else "true"

            def by_hand_restore() -> tuple[float, int]:
                fresh(restored / "data")
                started = start_and_wait(restored / "data", port, bin_dir)
                return timed(f"set -o pipefail; {unpack} && {chown} && {started}", env, True)

            def drop_by_hand() -> None:
                stop(restored / "data", bin_dir)
                shutil.rmtree(restored)

            repeated("age -d | zstd -d | tar -x + start (by hand)", by_hand_restore, drop_by_hand)

            plain = out / "plain.dump"
            timed(f"pg_dump -Fc -Z0 -f {plain} '{conninfo}'", env, True)
            into, _ = postgres.libpq_env(cluster.url("erp_pg_restore"))

            def pg_restore() -> tuple[float, int]:
                with postgres.connect(cluster.url("postgres")) as conn:
                    conn.execute("DROP DATABASE IF EXISTS erp_pg_restore")
                    conn.execute("CREATE DATABASE erp_pg_restore")
                return timed(f"pg_restore -j2 -d '{into}' {plain}", env, True)

            repeated("bare pg_restore -j2 of a dump", pg_restore)
            with postgres.connect(cluster.url("postgres")) as conn:
                conn.execute("DROP DATABASE erp_pg_restore")
            plain.unlink()

            def dropper(target: Path) -> Callable[[], None]:
                def drop() -> None:
                    stop(target / "data", bin_dir)
                    shutil.rmtree(target)

                return drop

            core_target = out / "pitr-core"
            repeated(
                "restore pitr --latest, core (no Prefect)",
                lambda: timed([sys.executable, str(ROOT / "bench" / "run_pitr_core.py"), str(core_target)], env),
                dropper(core_target),
            )
            target = out / "pitr-restored"
            command = [sppg, "restore", "pitr", "--latest", "--target-dir", str(target), "--json"]
            flow_restore = "sppg-backup restore pitr --latest (Prefect flow)"
            repeated(flow_restore, lambda: timed(command, flow_env), dropper(target))

            print_table()
            lag_under_load(out, cluster, env, args.pgbench_seconds, args.interval)
            restore_with_wal(out, env, flow_env, key, bin_dir)
    finally:
        cluster.stop(remove=False)


if __name__ == "__main__":
    main()
