"""The pieces of recover-server that decide from what storage says: where files may go, which service is the
database, the password from the .env, whether this host is new, what the server said it recovered to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sppg_backup.errors import ConfigError
from sppg_backup.full import recover
from sppg_backup.ops.compose import Stack, find_file
from sppg_backup.physical.in_container import recovered_to


@pytest.mark.parametrize("folder", ["/", "/etc", "/usr/", "/var/lib", "relative/app", "/opt/../etc"])
def test_a_recorded_app_dir_that_is_a_system_folder_or_not_absolute_is_refused(folder: str) -> None:
    with pytest.raises(ConfigError, match="--app-dir"):
        recover.check_app_dir(Path(folder), folder)


def test_an_app_dir_with_files_is_not_a_new_host_unless_an_earlier_try_made_them(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    assert recover.check_app_dir(tmp_path / "app", None) == tmp_path / "app"  # empty: fine
    (tmp_path / "app" / "left.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a new host"):
        recover.check_app_dir(tmp_path / "app", None)
    assert recover.check_app_dir(tmp_path / "app", None, rerun=True) == tmp_path / "app"


def test_the_settings_file_says_whether_a_recovery_of_this_set_finished(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "config.toml"
    assert recover.earlier_try(path, "set_1") is False
    recover.write_config(path, {"app_dir": Path("/opt/erp"), "drill_checks": []}, "set_1")
    assert recover.earlier_try(path, "set_1") is True
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="exists"):
        recover.earlier_try(path, "set_2")  # another set's recovery, or a file of the host's own
    recover.write_config(path, {"app_dir": "/opt/erp"}, "set_1", done=True)
    with pytest.raises(ConfigError, match="recovered onto this host already"):
        recover.earlier_try(path, "set_1")
    path.write_text('app_dir = "/opt/erp"\n')
    with pytest.raises(ConfigError, match="exists"):
        recover.earlier_try(path, "set_1")


def test_the_database_password_comes_from_the_env_file_for_its_user(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# stack\nexport POSTGRES_PASSWORD='p@ss:w/rd'\nJWT_SECRET=x\n")
    url = "postgresql://postgres@127.0.0.1:5432/erp_sppg"
    assert recover.with_password(url, env) == "postgresql://postgres:p%40ss%3Aw%2Frd@127.0.0.1:5432/erp_sppg"
    assert recover.with_password("postgresql://erp@db:5432/erp_sppg", env) == "postgresql://erp@db:5432/erp_sppg"
    given = "postgresql://postgres:mine@127.0.0.1:5432/erp_sppg"
    assert recover.with_password(given, env) == given  # a password this host gives wins
    env.write_text('POSTGRES_USER=erp\nPOSTGRES_PASSWORD="s3cret"\n')
    assert recover.with_password("postgresql://erp@db/erp_sppg", env) == "postgresql://erp:s3cret@db/erp_sppg"
    assert recover.with_password(url, tmp_path / "missing.env") == url


def test_the_database_service_is_db_container_or_the_one_postgres_image(tmp_path: Path) -> None:
    file = tmp_path / "docker-compose.prod.yml"
    file.write_text(
        "services:\n  database:\n    image: docker.io/library/postgres:15\n    container_name: erp-db\n"
        "  backend-1:\n    image: erp-sppg-backend:latest\n"
    )
    stack = Stack.read(file)
    assert stack.database(None) == "database"
    assert stack.database("erp-db") == "database" and stack.database("database") == "database"
    with pytest.raises(ConfigError, match="not a service"):
        stack.database("nope")
    file.write_text("services:\n  a:\n    image: postgres:15\n  b:\n    image: postgis/postgis:15\n")
    assert Stack.read(file).database(None) is None  # two: which one is not guessed
    file.write_text("version: '3'\n")
    with pytest.raises(ConfigError, match="names no services"):
        Stack.read(file)
    with pytest.raises(ConfigError, match="not there"):
        Stack.read(tmp_path / "gone.yml")


def test_the_compose_file_is_found_among_the_config_paths_or_in_app_dir(tmp_path: Path) -> None:
    assert find_file(["/opt/erp/.env", "/opt/erp/docker-compose.prod.yml"], None) == Path(
        "/opt/erp/docker-compose.prod.yml"
    )
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    assert find_file(["/opt/erp/.env"], tmp_path) == tmp_path / "compose.yaml"
    assert find_file([], None) is None


def test_the_recovered_to_time_is_read_from_the_servers_log() -> None:
    said = (
        "LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s\n"
        "LOG:  last completed transaction was at log time 2026-12-04 20:58:20.830979+00\n"
        "LOG:  database system is ready to accept connections\n"
    )
    assert recovered_to(said) == datetime(2026, 12, 4, 20, 58, 20, 830979, tzinfo=UTC)
    assert recovered_to("LOG:  database system is ready to accept connections\n") is None


def test_with_another_app_dir_what_was_inside_the_old_one_is_inside_the_new_one() -> None:
    from sppg_backup.full.system import FullSet
    from sppg_backup.settings import Settings

    taken = {
        "app_dir": "/opt/erp-sppg",
        "config_paths": ["/opt/erp-sppg/docker-compose.prod.yml", "/etc/erp/extra.conf"],
        "uploads_dir": "/opt/erp-sppg/uploads",
        "replica_urls": ["gs://dr/backups", "gs://other/backups"],
    }
    full = FullSet.model_validate(
        {
            "id": "s",
            "created_at": datetime.now(UTC),
            "finished_at": datetime.now(UTC),
            "duration_seconds": 1,
            "app_dir": "/opt/erp-sppg",
            "images": [],
            "parts": [],
            "encryption": "age",
            "taken_with": taken,
        }
    )
    request = recover.RecoverRequest(storage_url="gs://dr/backups", identity_file="/k", app_dir="/srv/erp")
    values = recover.host_values(full, Settings(), request)
    assert values["app_dir"] == "/srv/erp" and values["uploads_dir"] == "/srv/erp/uploads"
    assert values["config_paths"] == ["/srv/erp/docker-compose.prod.yml", "/etc/erp/extra.conf"]
    assert values["storage_url"] == "gs://dr/backups" and values["replica_urls"] == ["gs://other/backups"]
