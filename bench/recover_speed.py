"""recover-server's RTO on a new host, with about 1 GB of generated ERP data in the stack's PostgreSQL container.

    .venv/bin/python bench/recover_speed.py [--scale 400] [--workdir .bench/recover]

The stack of tests/integration/test_recover_server.py (a PostgreSQL container made like the stock image, a web
service) runs on its own Docker engine; it is filled with the sample ERP data, backed up with point-in-time
recovery set up (the receiver streaming WAL, then `backup full`, then a minute of commits to a table), and
lost: its engine stopped, its folders deleted. On a fresh engine, `recover server` runs twice, each time from
nothing: to the newest WAL (base backup + WAL replayed by the container's own server), then `--from-dump`.
Reported: the database's size, the set's, each run's wall time (the RTO: from the command to the health check
answering), its RPO, and the peak memory of its process tree (sppg-backup and docker-compose; the container's
server is the engine's child, not counted). Storage is a local folder: the figures are ours, not a network's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.common import timed_detail  # noqa: E402
from sppg_backup.display import human_size  # noqa: E402
from sppg_backup.sandbox.clusters import fill_sample, prefect_server  # noqa: E402
from sppg_backup.stream.crypto import generate_key_file  # noqa: E402
from tests.conftest import DockerEngine  # noqa: E402
from tests.integration.test_recover_server import OldHost, compose, make_images, wait_for  # noqa: E402


def sppg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "sppg_backup", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sppg-backup {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def wipe(engine: DockerEngine, host: OldHost, config: Path) -> None:
    for container in engine.client.containers.list(all=True):
        container.remove(force=True)
    for volume in engine.client.volumes.list():
        volume.remove(force=True)
    for image in engine.client.images.list():
        engine.client.images.remove(image.id, force=True)
    shutil.rmtree(host.root / "opt", ignore_errors=True)
    shutil.rmtree(host.root / "var", ignore_errors=True)
    config.unlink(missing_ok=True)


def back_up(
    old: DockerEngine, work: Path, key: Path, public: str, storage: Path, base_env: dict[str, str], api: str, scale: int
) -> tuple[int, int, OldHost]:
    """The old server: its stack filled, backed up with the receiver running, a minute of commits after."""
    make_images(old)
    host = OldHost(work / "host", old)
    compose(host.app, old, "up", "-d")
    wait_for(host.url("postgres"))
    with psycopg.connect(host.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE erp_sppg")
    started = time.perf_counter()
    fill_sample(host.url(), scale)
    with psycopg.connect(host.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE after_set (id int PRIMARY KEY, note text)")
        size = conn.execute("SELECT pg_database_size('erp_sppg')").fetchone()[0]  # type: ignore[index]
    print(f"generated {human_size(size)} in {time.perf_counter() - started:.0f} s", flush=True)
    env = {
        **base_env,
        **{"SPPG_BACKUP_" + k: v for k, v in host.settings().items()},
        "SPPG_BACKUP_STORAGE_URL": storage.as_uri(),
        "SPPG_BACKUP_AGE_RECIPIENTS": public,
        "SPPG_BACKUP_AGE_IDENTITY_FILE": str(key),
        "SPPG_BACKUP_SCHEDULED_FLOWS": "",
        "SPPG_BACKUP_HEALTH_TIMEOUT_SECONDS": "120",
        "SPPG_BACKUP_DRILL_CHECKS": json.dumps(
            [{"name": "users", "sql": "SELECT count(*) > 0 FROM users", "expect": "true"}]
        ),
        "DOCKER_HOST": old.host,
        "PREFECT_API_URL": api,
    }
    (work / "host" / "var").mkdir(exist_ok=True)
    receiver = subprocess.Popen(
        [sys.executable, "-m", "sppg_backup", "wal", "stream"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(3)
        started = time.perf_counter()
        made = json.loads(sppg("backup", "full", "--json", env=env).stdout)
        print(f"backup full in {time.perf_counter() - started:.0f} s", flush=True)
        with psycopg.connect(host.url(), autocommit=True) as conn:
            for n in range(1, 601):  # a minute of commits after the set: WAL to replay
                conn.execute("INSERT INTO after_set VALUES (%s, 'after the set')", [n])
                time.sleep(0.1)
        time.sleep(15)
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(60)
    return sum(p["size"] for p in made["parts"]), size, host


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=400)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench" / "recover")
    args = parser.parse_args()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "host").mkdir(parents=True)
    (work / "host").chmod(0o755)
    key = work / "key.txt"
    public = generate_key_file(key)
    storage = work / "storage"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SPPG_BACKUP_")}
    results = {}
    with prefect_server(work / "prefect") as api:
        old = DockerEngine(with_image=False)
        try:
            set_size, size, host = back_up(old, work, key, public, storage, base_env, api, args.scale)
        finally:
            for container in old.client.containers.list(all=True):
                container.remove(force=True)
            old.stop()  # the disaster
        new = DockerEngine(with_image=False)
        config = work / "etc" / "config.toml"
        fresh_env = {**base_env, "DOCKER_HOST": new.host, "PREFECT_API_URL": api}
        fresh_env |= {
            "SPPG_BACKUP_STATE_DIR": str(work / "new-state"),
            "SPPG_BACKUP_LOCAL_DIR": str(work / "new-local"),
        }
        try:
            for label, extra in (("to the newest WAL", []), ("from the set's dump", ["--from-dump"])):
                wipe(new, host, config)
                command = [sys.executable, "-m", "sppg_backup", "recover", "server", "--storage", storage.as_uri()]
                command += ["--identity", str(key), "--write-config", str(config), "--yes", "--json", *extra]
                out = work / "result.json"
                seconds, peak, largest = timed_detail(f"{' '.join(command)} > {out}", fresh_env, shell=True)
                result = json.loads(out.read_text())
                with psycopg.connect(host.url()) as conn:
                    rows = conn.execute("SELECT count(*) FROM after_set").fetchone()[0]  # type: ignore[index]
                results[label] = (seconds, result["rpo_seconds"], peak, largest, rows)
                print(f"recover server {label}: {seconds:.1f} s, {rows} of 600 later commits", flush=True)
        finally:
            for container in new.client.containers.list(all=True):
                container.remove(force=True)
            new.stop()
    print(f"\ndatabase {human_size(size)}, full-system set {human_size(set_size)} (scale {args.scale})\n")
    print("| recover server | RTO (s) | RPO (s) | peak memory | largest process | later commits back |")
    print("|---|---|---|---|---|---|")
    for label, (seconds, rpo, peak, largest, rows) in results.items():
        print(f"| {label} | {seconds:.1f} | {rpo} | {human_size(peak)} | {human_size(largest)} | {rows} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
