"""The embedded default: a throwaway PostgreSQL with sample ERP data, file:// storage, a demo key."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

from sppg_backup.db.catalog import list_backups
from sppg_backup.display import human_size, shown_time
from sppg_backup.sandbox.clusters import Cluster, fill_sample
from sppg_backup.settings import load_settings
from sppg_backup.storage import open_storage
from sppg_backup.stream.crypto import generate_key_file


def run_demo(workdir: Path, scale: int, out: Console, keep: bool = False) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    key_file = workdir / "demo-key.txt"
    public = generate_key_file(key_file) if not key_file.exists() else _public_key(key_file)
    cluster = Cluster().start()
    try:
        url = cluster.create_database("erp_sppg")
        rows = fill_sample(url, scale)
        out.print(
            f"sample database erp_sppg on 127.0.0.1:{cluster.port}: {sum(rows.values())} rows in {len(rows)} tables"
        )
        config = workdir / "sppg-backup.toml"
        config.write_text(
            f'database_url = "{url}"\n'
            f'storage_url = "{(workdir / "storage").as_uri()}"\n'
            f'local_dir = "{workdir / "local"}"\n'
            f'age_recipients = ["{public}"]\n'
            f'age_identity_file = "{key_file}"\n'
            f'metrics_file = "{workdir / "metrics" / "sppg_backup.prom"}"\n'
            f'audit_log = "{workdir / "audit.jsonl"}"\n'
        )
        config.chmod(0o600)
        from sppg_backup.flows.backup_database import backup_database

        manifest = backup_database(config_file=str(config))
        out.print(f"backup {manifest['id']}: {human_size(manifest['size'])}, sha256 {manifest['sha256'][:16]}...")
    finally:
        if not keep:
            cluster.stop()
    settings = load_settings(config)
    listing = list_backups(open_storage(settings.storage_url))
    out.print(f"\nbackups in {settings.storage_url}:")
    for m in listing.backups:
        out.print(
            f"  {m.id}  {shown_time(m.created_at, settings.zone)}  {human_size(m.size)}  "
            f"{workdir / 'storage' / m.data_key}",
            highlight=False,
        )
    command = Path(sys.executable).with_name("sppg-backup")
    out.print(f"\nsettings: {config}  key: {key_file}\ntry: {command} --config {config} list", highlight=False)
    if keep:
        out.print(
            f"the sample database keeps running on port {cluster.port} (`{command} --config {config} backup db` "
            f"works); stop it with: {stop_command(cluster)}",
            highlight=False,
        )
    else:
        out.print(
            "the sample database was stopped; run the demo with --keep to back it up again yourself", highlight=False
        )


def stop_command(cluster: Cluster) -> str:
    stop = f"{cluster.bin_dir}/pg_ctl -D {cluster.data} stop"
    return f"su postgres -c '{stop}'" if os.geteuid() == 0 else stop


def _public_key(key_file: Path) -> str:
    for line in key_file.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.removeprefix("# public key: ").strip()
    from pyrage import x25519

    from sppg_backup.stream.crypto import load_identities

    identity: x25519.Identity = load_identities(key_file)[0]
    return str(identity.to_public())
