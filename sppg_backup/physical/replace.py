"""`restore pitr --replace`: the recovered data put in place of a database that runs in a Docker container.

The data is found through the docker SDK (the container's PGDATA and the volume or bind mount holding it). The
recovery runs in a scratch folder (the server's user cannot pass through Docker's data root); the stopped,
recovered data is then copied onto the disk of the database's data while the database still runs, and the swap
is renames: the old data moves aside (a new volume, or a folder beside a bind mount; kept, never deleted here),
the recovered data moves in, so the database is down for seconds.
Each phase of the swap is written down first, so a run killed half-way is undone by the next one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sppg_backup import processes
from sppg_backup.errors import ConfigError, NotFoundError, PermanentError
from sppg_backup.ops import containers
from sppg_backup.physical.pitr import MARK

DEFAULT_PGDATA = "/var/lib/postgresql/data"
LABEL = "sppg-backup.pitr"
FOLDER = "pitr-swaps"
OWNER = ".sppg-backup-owner.json"  # who made an incoming folder beside a bind mount


@dataclass(frozen=True)
class Place:
    """Where the database's data is on the Docker host, and where the incoming and kept copies go."""

    container: containers.Service
    data: str  # PGDATA as the Docker host sees it
    volume: str | None  # the named volume holding it; None for a bind mount
    inside: str  # PGDATA relative to the mount's root ("" when PGDATA is the mount itself)
    uid: int
    gid: int

    @property
    def data_path(self) -> Path:
        return Path(self.data)


def find(client: Any, name: str) -> Place:
    """The one container `name` names, the mount that holds its PGDATA, the data on this host."""
    try:
        found = containers.resolve(client, [name])
    except NotFoundError:
        raise ConfigError(f"DB_CONTAINER {name}: no container and no Compose service of that name") from None
    if len(found) != 1:
        raise ConfigError(f"DB_CONTAINER {name} names {len(found)} containers: name the database's one container")
    service = found[0]
    data, mount, inside = data_mount(client.containers.get(service.container_id).attrs, service.container_name)
    if not (data / "PG_VERSION").is_file():
        raise ConfigError(
            f"the data of {service.container_name} is at {data} on the Docker host, which this host cannot read: "
            "run the replace on the Docker host, as root"
        )
    stat = data.stat()
    volume = mount.get("Name") if mount.get("Type") == "volume" else None
    return Place(service, str(data), volume, "" if inside == "." else inside, stat.st_uid, stat.st_gid)


def data_mount(attrs: dict[str, Any], name: str) -> tuple[Path, dict[str, Any], str]:
    """Where a container's PGDATA is on the Docker host: the path, the mount holding it, PGDATA inside it."""
    env = dict(item.split("=", 1) for item in attrs.get("Config", {}).get("Env") or [] if "=" in item)
    pgdata = PurePosixPath(env.get("PGDATA", DEFAULT_PGDATA))
    mounts = [m for m in attrs.get("Mounts", []) if pgdata.is_relative_to(m.get("Destination", "/nowhere"))]
    if not mounts:
        raise ConfigError(
            f"{name} keeps its data ({pgdata}) in no volume or bind mount: "
            "it would be lost with the container, and cannot be replaced"
        )
    mount = max(mounts, key=lambda m: len(m["Destination"]))
    inside = str(pgdata.relative_to(mount["Destination"]))
    return (Path(mount["Source"]) / inside if inside != "." else Path(mount["Source"])), mount, inside


def _volume_data(client: Any, name: str, role: str) -> Path:
    owner = {f"{LABEL}.{key}": str(value) for key, value in processes.me().items()}
    volume = client.volumes.create(name=name, labels={LABEL: role, **owner})
    return Path(volume.attrs["Mountpoint"])


def incoming(client: Any, place: Place, stamp: str) -> Path:
    """A new folder on the disk of the data, for the recovered data (a volume of its own beside a volume), so
    that the swap is renames: the database is down for seconds, not for a copy."""
    if place.volume:
        folder = _volume_data(client, f"{place.volume}-pitr-{stamp}", "incoming")
    else:
        folder = place.data_path.parent / f".{place.data_path.name}.pitr-{stamp}"
        folder.mkdir(mode=0o700)
        (folder / OWNER).write_text(json.dumps(processes.me()))
    if folder.stat().st_dev != place.data_path.stat().st_dev:
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError(f"{folder} is not on the disk of {place.data}: the swap would be a copy")
    return folder


def copy_in(recovered: Path, folder: Path, uid: int, gid: int) -> Path:
    """The stopped, recovered data copied into `folder`, as the container's server expects it."""
    data = folder / "data"
    shutil.copytree(recovered, data, symlinks=True)
    tidy(data, uid, gid)
    return data


def abandoned_incoming(client: Any, place: Place, state_dir: Path) -> list[str]:
    """Incoming copies whose run was killed before it swapped them in (no swap written down uses them):
    removed; what was removed."""
    busy = {Path(swap.recovered).parent for swap, _ in _all(state_dir)}
    removed = []
    for volume in client.volumes.list(filters={"label": f"{LABEL}=incoming"}):
        labels = volume.attrs.get("Labels") or {}
        owner = {key.removeprefix(f"{LABEL}."): value for key, value in labels.items() if key != LABEL}
        if processes.gone(owner) and Path(volume.attrs["Mountpoint"]) not in busy:
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
    for folder in place.data_path.parent.glob(f".{place.data_path.name}.pitr-*"):
        try:
            owner = json.loads((folder / OWNER).read_text())
        except (OSError, ValueError):
            continue
        if processes.gone(owner) and folder not in busy:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def remove_incoming(client: Any, place: Place, folder: Path, stamp: str) -> None:
    if place.volume:
        from docker.errors import NotFound

        try:
            client.volumes.get(f"{place.volume}-pitr-{stamp}").remove(force=True)
            return
        except NotFound:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def aside(client: Any, place: Place, stamp: str) -> tuple[str, Path]:
    """Where the old data goes, kept: its name for the user (a volume, or a folder) and its path here."""
    if place.volume:
        name = f"{place.volume}-before-pitr-{stamp}"
        root = _volume_data(client, name, "before")
        folder = root / place.inside if place.inside else root
        folder.mkdir(parents=True, exist_ok=True)
        return f"volume {name}" + (f" ({place.inside})" if place.inside else ""), folder
    folder = place.data_path.parent / f"{place.data_path.name}.before-pitr-{stamp}"
    folder.mkdir(mode=0o700)
    return str(folder), folder


def drop_empty_aside(client: Any, place: Place, stamp: str) -> None:
    """After an undo the kept copy is empty: it goes (the old data is back in place)."""
    if place.volume:
        from docker.errors import NotFound

        try:
            volume = client.volumes.get(f"{place.volume}-before-pitr-{stamp}")
        except NotFound:
            return
        root = Path(volume.attrs["Mountpoint"])
        if not any((root / place.inside).iterdir() if place.inside else root.iterdir()):
            volume.remove(force=True)
        return
    folder = place.data_path.parent / f"{place.data_path.name}.before-pitr-{stamp}"
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def tidy(data: Path, uid: int, gid: int) -> None:
    """The recovered data as the container's server expects it: without the recovery settings (their port,
    listen address and restore command were for the recovery's server) and owned by the container's user."""
    conf = data / "postgresql.auto.conf"
    text = conf.read_text()
    if MARK in text:
        conf.write_text(text.split("\n" + MARK, 1)[0].rstrip("\n") + "\n")
    for stale in ("recovery.signal", "standby.signal", "postmaster.pid", "postmaster.opts"):
        (data / stale).unlink(missing_ok=True)
    own(data, uid, gid)


def own(data: Path, uid: int, gid: int) -> None:
    for item in [data, *data.rglob("*")]:
        os.chown(item, uid, gid, follow_symlinks=False)
    data.chmod(0o700)


@dataclass(frozen=True)
class Swap:
    """A swap written down: the data folder, the recovered data, where the old data goes."""

    data: str
    recovered: str
    kept: str
    phase: str = "aside"  # aside: old data moving out; in: recovered moving in; done

    def journal(self, state_dir: Path) -> Path:
        return state_dir / FOLDER / (Path(self.data).as_posix().strip("/").replace("/", "_") + ".json")


def _write(path: Path, swap: Swap) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as out:
        json.dump({**asdict(swap), **processes.me()}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _move_all(source: Path, dest: Path) -> None:
    for child in sorted(source.iterdir()):
        os.rename(child, dest / child.name)  # same disk: atomic per entry, never a copy


def swap_in(state_dir: Path, data: Path, recovered: Path, kept: Path) -> Swap:
    """The old data into `kept`, the recovered data into `data`; each phase durably written down first."""
    swap = Swap(str(data), str(recovered), str(kept))
    path = swap.journal(state_dir)
    if path.exists():
        raise PermanentError(f"a swap of {data} is still written down in {path}: an earlier run did not finish it")
    _write(path, swap)
    _move_all(data, kept)
    swap = Swap(swap.data, swap.recovered, swap.kept, "in")
    _write(path, swap)
    _move_all(recovered, data)
    done = Swap(swap.data, swap.recovered, swap.kept, "done")
    _write(path, done)
    return done


def undo(state_dir: Path, swap: Swap) -> None:
    """Put the old data back (the recovered data back where it was recovered), then forget the swap."""
    data, recovered, kept = Path(swap.data), Path(swap.recovered), Path(swap.kept)
    if swap.phase in ("in", "done"):
        _move_all(data, recovered)
    _move_all(kept, data)
    finish(state_dir, swap)


def finish(state_dir: Path, swap: Swap) -> None:
    swap.journal(state_dir).unlink(missing_ok=True)


def _read(path: Path) -> tuple[Swap, dict[str, Any]] | None:
    try:
        entry = json.loads(path.read_text())
        return Swap(entry["data"], entry["recovered"], entry["kept"], entry["phase"]), entry
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"the swap written down in {path} cannot be read ({exc}): undo it by hand") from None


def written_down(state_dir: Path, data: Path) -> Swap | None:
    """The swap into `data` that is written down, if any."""
    found = _read(Swap(str(data), "", "").journal(state_dir))
    return found[0] if found else None


def _all(state_dir: Path) -> list[tuple[Swap, dict[str, Any]]]:
    return [read for path in sorted((state_dir / FOLDER).glob("*.json")) if (read := _read(path))]


def abandoned(state_dir: Path) -> list[Swap]:
    """Swaps written down by runs that ended (killed) without finishing or undoing them."""
    return [swap for swap, entry in _all(state_dir) if processes.gone(entry)]
