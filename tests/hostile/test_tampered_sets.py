"""A full-system set edited in storage (by anyone who can write to the bucket: the public key is in every
manifest) changes nothing outside the folder the engineer chose."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from sppg_backup.full import system
from sppg_backup.storage import open_storage
from tests.dbcheck import drop, table_contents
from tests.helpers import cli, file_tree

pytestmark = pytest.mark.integration


def hard_link_then_write(outside: Path) -> bytes:
    """The reported attack: a hard link to an outside file, then a file of that name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        link = tarfile.TarInfo("pw")
        link.type, link.linkname = tarfile.LNKTYPE, str(outside / "passwd")
        tar.addfile(link)
        owned = tarfile.TarInfo("pw")
        owned.size, owned.mode = 6, 0o4777
        tar.addfile(owned, io.BytesIO(b"owned\n"))
    return buffer.getvalue()


def tamper(storage: Any, set_id: str, recipient: str, outside: Path, tar: bytes | None) -> None:
    full = system.FullSet.model_validate_json(storage.open_read(system.manifest_key(set_id)).read())
    parts = list(full.parts)
    if tar is not None:
        [app] = [p for p in parts if p.kind == "application"]
        assert app.key is not None
        size, sha = system._store(storage, app.key, io.BytesIO(tar), [recipient])
        parts[parts.index(app)] = app.model_copy(update={"size": size, "sha256": sha})
    system.publish(storage, full.model_copy(update={"parts": parts, "app_dir": str(outside)}))


def backed_up(system: dict[str, Any], api: str) -> str:
    made = cli("backup", "full", "--json", api=api)
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["id"])


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "passwd").write_text("root:x:0:0\n")
    return folder


def untouched(outside: Path) -> bool:
    return (outside / "passwd").read_text() == "root:x:0:0\n" and [p.name for p in outside.iterdir()] == ["passwd"]


def test_a_crafted_application_tar_is_refused_before_the_live_folder_changes(
    system: dict[str, Any], prefect_api: str, postgres_cluster: Any, age_key: tuple[Path, str], outside: Path
) -> None:
    set_id = backed_up(system, prefect_api)
    live = file_tree(system["app"])
    tamper(open_storage(system["STORAGE_URL"]), set_id, age_key[1], outside, hard_link_then_write(outside))
    target_db = postgres_cluster.url("erp_tampered")
    done = cli("restore", "full", set_id, "--yes", "--target-url", target_db, api=prefect_api)
    assert done.returncode == 1 and "refusing the whole archive" in done.stderr, done.stderr
    assert untouched(outside)
    assert file_tree(system["app"]) == live  # APP_DIR: the tar was checked whole before the first write
    assert system["engine"].client.containers.get("backend-1").status == "running"
    drop(postgres_cluster, target_db)


def test_the_files_go_where_app_dir_says_not_where_the_manifest_says(
    system: dict[str, Any], prefect_api: str, postgres_cluster: Any, age_key: tuple[Path, str], outside: Path
) -> None:
    set_id = backed_up(system, prefect_api)
    tamper(open_storage(system["STORAGE_URL"]), set_id, age_key[1], outside, None)
    target_db = postgres_cluster.url("erp_elsewhere")
    done = cli("restore", "full", set_id, "--yes", "--target-url", target_db, "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    assert untouched(outside) and json.loads(done.stdout)["app_dir"] == str(system["app"])
    assert table_contents(target_db) == table_contents(system["DATABASE_URL"])
    drop(postgres_cluster, target_db)
