"""Where a restore goes and with which password: never a password typed into the run."""

from sppg_backup.db.recovery import target_url

PRODUCTION = "postgresql://backup:prod-pw@10.0.0.5:5432/erp_sppg"


def test_no_target_is_the_production_database() -> None:
    assert target_url(PRODUCTION, None, None) == PRODUCTION


def test_the_same_server_and_login_borrows_the_password() -> None:
    assert target_url(PRODUCTION, "postgresql://backup@10.0.0.5:5432/erp_copy", None) == (
        "postgresql://backup:prod-pw@10.0.0.5:5432/erp_copy"
    )


def test_another_login_gets_target_password_and_nothing_else() -> None:
    other = "postgresql://restorer@10.0.0.9:5432/erp_sppg"
    assert target_url(PRODUCTION, other, "t-pw") == "postgresql://restorer:t-pw@10.0.0.9:5432/erp_sppg"
    assert target_url(PRODUCTION, other, None) == other  # no password: libpq's own (.pgpass) is used
