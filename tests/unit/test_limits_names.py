"""The names of the concurrency limits: one per database (whoever logs in), per backup catalog and per file catalog,
valid for Prefect, with no secret in them."""

from __future__ import annotations

import re

from sppg_backup.ops.limits import DATABASE, FILES, holder_variable, names
from sppg_backup.settings import Settings


def _settings(database: str, storage: str) -> Settings:
    return Settings(database_url=database, storage_url=storage, local_dir=None)


def test_one_database_has_one_limit_whoever_logs_in_and_no_password_is_in_it() -> None:
    one = names(
        _settings("postgresql://backup:s3cret@db.internal:5433/erp_sppg", "gs://erp-backups/site-a"), (DATABASE,)
    )
    other = names(_settings("postgresql://postgres@db.internal:5433/erp_sppg", "gs://erp-backups/site-a"), (DATABASE,))
    assert (
        one == other == ["sppg-backup:backups:gs:erp-backups:site-a", "sppg-backup:database:erp_sppg@db.internal:5433"]
    )
    assert not any("s3cret" in name or "backup:" in name.removeprefix("sppg-backup:") for name in one)


def test_instances_in_one_bucket_and_databases_on_one_server_are_kept_apart() -> None:
    a = _settings("postgresql://u@db:5432/erp_a", "gs://erp-backups/site-a")
    b = _settings("postgresql://u@db:5432/erp_b", "gs://erp-backups/site-b")
    assert set(names(a, (DATABASE, FILES))).isdisjoint(names(b, (DATABASE, FILES)))
    assert names(a, (FILES,)) == ["sppg-backup:files:gs:erp-backups:site-a"]
    restore_elsewhere = names(a, (DATABASE,), "postgresql://u@scratch:5432/erp_a")
    assert "sppg-backup:database:erp_a@scratch:5432" in restore_elsewhere


def test_names_are_valid_limit_and_variable_names() -> None:
    settings = _settings("postgresql://u@/erp?host=/var/run/postgresql", "file:///var/lib/sppg-backup/storage")
    for name in names(settings, (DATABASE, FILES)):
        assert not set("/%&<>?# ") & set(name), name  # Prefect bans / % & > <; the rest would break its URL path
        assert re.fullmatch(r"[a-z0-9_-]+", holder_variable(name)), holder_variable(name)
    # two limits differing only in case or punctuation never share a holder variable
    assert holder_variable("sppg-backup:database:ERP@db:5432") != holder_variable("sppg-backup:database:erp@db:5432")
