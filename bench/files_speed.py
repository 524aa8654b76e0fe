"""Uploads snapshots: speed and memory of a first snapshot, an unchanged one, one after a few edits, a restore.

    .venv/bin/python bench/files_speed.py [--files 3000] [--big-mb 400]

Generates an uploads folder in .bench/files (random, incompressible content like PDFs and photos: many small
files and one big one), then times each step as the `sppg-backup` command a person would run, without a
Prefect server (ephemeral API): first snapshot, a run with nothing changed, a run after 10 edits, a full
restore into an empty folder. Peak memory is the RSS of the whole process tree.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import timed
from sppg_backup.sandbox.clusters import prefect_server
from sppg_backup.stream.crypto import generate_key_file


def make_uploads(root: Path, files: int, big_mb: int) -> int:
    rng = random.Random(1)
    total = 0
    for i in range(files):
        folder = root / f"{2024 + i % 2}" / f"{1 + i % 12:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.choice([2_000, 20_000, 80_000, 250_000])
        (folder / f"faktur {i:05d}.pdf").write_bytes(os.urandom(size))
        total += size
    (root / "scan arsip besar.tiff").write_bytes(os.urandom(big_mb << 20))
    return total + (big_mb << 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--big-mb", type=int, default=400)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench" / "files")
    args = parser.parse_args()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    uploads = work / "uploads"
    total = make_uploads(uploads, args.files, args.big_mb)
    print(f"uploads: {args.files + 1} files, {total / 1e6:.0f} MB")
    key = work / "key.txt"
    env = {
        **os.environ,
        "SPPG_BACKUP_STORAGE_URL": (work / "storage").as_uri(),
        "SPPG_BACKUP_UPLOADS_DIR": str(uploads),
        "SPPG_BACKUP_STATE_DIR": str(work / "state"),
        "SPPG_BACKUP_AGE_RECIPIENTS": generate_key_file(key),
        "SPPG_BACKUP_AGE_IDENTITY_FILE": str(key),
        "SPPG_BACKUP_LOCAL_DIR": "",
        "SPPG_BACKUP_AUDIT_LOG": str(work / "audit.jsonl"),
    }
    (work / "storage").mkdir()
    cli = str(Path(sys.executable).with_name("sppg-backup"))
    results = {}
    with prefect_server(work / "prefect") as api:
        env["PREFECT_API_URL"] = api
        results["first snapshot"] = timed([cli, "backup", "files"], env)
        results["nothing changed"] = timed([cli, "backup", "files"], env)
        for path in sorted(uploads.rglob("*.pdf"))[:10]:
            path.write_bytes(os.urandom(path.stat().st_size))
        results["10 files edited"] = timed([cli, "backup", "files"], env)
        results["restore everything"] = timed([cli, "restore", "files", "--target", str(work / "restored")], env)
    print(f"\n{'step':24} {'seconds':>8} {'MB/s':>7} {'peak MB':>8}")
    for name, (seconds, peak) in results.items():
        rate = f"{total / 1e6 / seconds:7.0f}" if name in ("first snapshot", "restore everything") else "      -"
        print(f"{name:24} {seconds:8.1f} {rate} {peak / 1e6:8.0f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
