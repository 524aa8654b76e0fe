"""The data swap of `restore pitr --replace`, on real folders: each phase undone by a later run leaves the old
data whole; a finished swap stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sppg_backup.errors import PermanentError
from sppg_backup.physical import replace


def folders(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    data, recovered, kept, state = (tmp_path / n for n in ("data", "recovered", "kept", "state"))
    for folder, label in ((data, "old"), (recovered, "new")):
        (folder / "base").mkdir(parents=True)
        (folder / "PG_VERSION").write_text(label)
        (folder / "base" / "1").write_text(label)
    kept.mkdir()
    return data, recovered, kept, state


def contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead(state: Path, swap: replace.Swap) -> None:
    """The journal as a run that was killed left it (its writer's pid gone)."""
    path = swap.journal(state)
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, "pid": 2**22 + 1, "process_start": "0"}))


def test_a_swap_moves_the_old_data_aside_and_the_recovered_data_in(tmp_path: Path) -> None:
    data, recovered, kept, state = folders(tmp_path)
    done = replace.swap_in(state, data, recovered, kept)
    assert contents(data) == {"PG_VERSION": "new", "base/1": "new"}
    assert contents(kept) == {"PG_VERSION": "old", "base/1": "old"} and not any(recovered.iterdir())
    assert replace.abandoned(state) == []  # its writer still runs
    with pytest.raises(PermanentError, match="still written down"):
        replace.swap_in(state, data, recovered, kept)
    replace.undo(state, done)
    assert contents(data) == {"PG_VERSION": "old", "base/1": "old"} and not done.journal(state).exists()
    assert contents(recovered) == {"PG_VERSION": "new", "base/1": "new"}


@pytest.mark.parametrize("moved", [0, 1, 2])
def test_a_run_killed_while_the_old_data_moves_aside_gets_it_back(tmp_path: Path, moved: int) -> None:
    data, recovered, kept, state = folders(tmp_path)
    swap = replace.Swap(str(data), str(recovered), str(kept))
    replace._write(swap.journal(state), swap)
    for child in sorted(data.iterdir())[:moved]:
        child.rename(kept / child.name)
    dead(state, swap)
    [left] = replace.abandoned(state)
    replace.undo(state, left)
    assert contents(data) == {"PG_VERSION": "old", "base/1": "old"} and replace.abandoned(state) == []


@pytest.mark.parametrize("moved", [0, 1, 2])
def test_a_run_killed_while_the_recovered_data_moves_in_gets_the_old_data_back(tmp_path: Path, moved: int) -> None:
    data, recovered, kept, state = folders(tmp_path)
    swap = replace.Swap(str(data), str(recovered), str(kept))
    for child in sorted(data.iterdir()):
        child.rename(kept / child.name)
    swap = replace.Swap(swap.data, swap.recovered, swap.kept, "in")
    replace._write(swap.journal(state), swap)
    for child in sorted(recovered.iterdir())[:moved]:
        child.rename(data / child.name)
    dead(state, swap)
    [left] = replace.abandoned(state)
    replace.undo(state, left)
    assert contents(data) == {"PG_VERSION": "old", "base/1": "old"}
    assert contents(recovered) == {"PG_VERSION": "new", "base/1": "new"}


def test_tidy_removes_the_staging_servers_settings_and_gives_the_files_to_the_containers_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "postgresql.auto.conf").write_text(f"max_connections = 50\n\n{replace.MARK}\nport = 5999\n")
    (data / "recovery.signal").touch()
    replace.tidy(data, 4321, 4321)
    assert (data / "postgresql.auto.conf").read_text() == "max_connections = 50\n"
    assert not (data / "recovery.signal").exists() and (data / "postgresql.auto.conf").stat().st_uid == 4321
