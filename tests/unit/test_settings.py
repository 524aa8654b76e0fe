from pathlib import Path

import pytest
from typer.testing import CliRunner

from sppg_backup.cli import app
from sppg_backup.errors import ConfigError
from sppg_backup.settings import load_settings, masked


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SPPG_BACKUP_"):
            monkeypatch.delenv(name)


def test_defaults_follow_the_guide() -> None:
    settings = load_settings()
    assert (settings.local_retention_days, settings.cloud_retention_days) == (30, 365)
    assert settings.compression == "zstd" and settings.encryption and settings.timezone == "Asia/Jakarta"


def test_environment_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_URLS", "json://a/b, mailto://u:p@x")
    monkeypatch.setenv("SPPG_BACKUP_AGE_RECIPIENTS", "age1aaa,age1bbb")
    settings = load_settings()
    assert settings.notify_urls == ["json://a/b", "mailto://u:p@x"]
    assert settings.age_recipients == ["age1aaa", "age1bbb"]


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('storage_url = "gs://bucket/x"\nlocal_retention_days = 7\nage_recipients = ["age1k"]\n')
    monkeypatch.setenv("SPPG_BACKUP_LOCAL_RETENTION_DAYS", "9")
    settings = load_settings(config)
    assert settings.storage_url == "gs://bucket/x" and settings.age_recipients == ["age1k"]
    assert settings.local_retention_days == 9


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COMPRESSION", "lz4", "bad setting SPPG_BACKUP_COMPRESSION: Input should be 'zstd' or 'gzip'"),
        ("STORAGE_URL", "s3://x", "bad setting SPPG_BACKUP_STORAGE_URL: must be file:///absolute/path or gs://"),
        ("DATABASE_URL", "mysql://x", "bad setting SPPG_BACKUP_DATABASE_URL: must start with postgresql://"),
        ("TIMEZONE", "Mars/Base", "bad setting SPPG_BACKUP_TIMEZONE: unknown time zone 'Mars/Base'"),
        ("AGE_RECIPIENTS", "ssh-rsa AAA", "bad setting SPPG_BACKUP_AGE_RECIPIENTS: ssh-rsa AAA... is not an age"),
        (
            "DATABASE_URL",
            "postgresql://u@h:54x/db",
            "bad setting SPPG_BACKUP_DATABASE_URL: the port '54x' is not a num",
        ),
        ("STATE_DIR", "/etc/hostname", "bad setting SPPG_BACKUP_STATE_DIR: /etc/hostname is a file, not a folder"),
        ("SCRATCH_DIR", "/etc/hostname", "bad setting SPPG_BACKUP_SCRATCH_DIR: /etc/hostname is a file, not a folder"),
        ("AUDIT_LOG", "/etc", "bad setting SPPG_BACKUP_AUDIT_LOG: /etc is a folder, not a file"),
        ("RETENTON_DAYS", "7", "unknown setting SPPG_BACKUP_RETENTON_DAYS: no such setting"),
        (
            "LOCAL_RETENTION_DAYS",
            "zero",
            "bad setting SPPG_BACKUP_LOCAL_RETENTION_DAYS: Input should be a valid integer",
        ),
    ],
)
def test_bad_setting_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv("SPPG_BACKUP_" + name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_encryption_without_recipients_fails_only_when_backing_up() -> None:
    settings = load_settings()
    with pytest.raises(ConfigError, match="SPPG_BACKUP_AGE_RECIPIENTS"):
        settings.require_recipients()
    assert load_settings(encryption=False).require_recipients() == []


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", "postgresql://backup:s3cret@db:5432/erp_sppg")
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_URLS", "slack://T1/B2/tok3n,mailtos://ops:pw@smtp.x?to=a@b")
    monkeypatch.setenv("SPPG_BACKUP_PUSHGATEWAY_URL", "https://u:pushpw@push:9091")
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_WARNING_URLS", "slack://T1/B2/warnt0ken")
    monkeypatch.setenv("SPPG_BACKUP_NOTIFY_CRITICAL_URLS", "twilio://AC1:smst0ken@+62811/+62812")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0
    assert "s3cret" not in result.output and "tok3n" not in result.output and "pushpw" not in result.output
    assert "warnt0ken" not in result.output and "smst0ken" not in result.output
    assert "postgresql://backup:***@db:5432/erp_sppg" in result.output
    assert masked(load_settings())["notify_urls"] == ["slack://***", "mailtos://***"]


def test_cli_bad_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPPG_BACKUP_COMPRESSION", "lz4")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2


def test_secrets_in_bad_urls_never_reach_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", "postgresql://u:SECRET%zzPW@h/db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SECRET" not in str(caught.value) and "SPPG_BACKUP_DATABASE_URL" in str(caught.value)


def test_password_query_parameters_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPPG_BACKUP_DATABASE_URL", "postgresql://u@h/db?password=hunter2&sslmode=require")
    shown = masked(load_settings())["database_url"]
    assert "hunter2" not in shown and "sslmode=require" in shown


def test_file_url_with_a_host_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPPG_BACKUP_STORAGE_URL", "file://.demo/storage")
    with pytest.raises(ConfigError, match="SPPG_BACKUP_STORAGE_URL"):
        load_settings()


def test_empty_local_dir_means_no_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", "")
    assert load_settings().local_dir is None
    monkeypatch.setenv("SPPG_BACKUP_LOCAL_DIR", "backups")
    with pytest.raises(ConfigError, match="SPPG_BACKUP_LOCAL_DIR: must be an absolute path"):
        load_settings()
