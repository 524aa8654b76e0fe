"""The restore form as the Prefect UI draws it: filled in, every field editable at once, times in WIB."""

from datetime import UTC, datetime

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from sppg_backup.catalog import chosen_id
from sppg_backup.forms import NEWEST, WIB, parse_time
from tasks.choices import with_choices
from tasks.restore import RestoreRequest


def schema() -> dict:  # type: ignore[type-arg]
    from flows.restore_database import restore_database

    return parameter_schema(restore_database.fn).model_dump()  # type: ignore[no-any-return]


def test_the_request_opens_with_its_defaults_and_no_field_needs_a_type_pick() -> None:
    found = schema()
    assert found["properties"]["request"]["default"]["safety_backup"] is True
    assert found["properties"]["config_file"]["default"] == ""
    fields = found["definitions"]["RestoreRequest"]["properties"]
    for name, field in fields.items():
        assert "anyOf" not in field, f"{name} would need a type pick in the UI"
        assert len(field.get("description", "")) > 30, f"{name} is not described for the engineer"
    assert "SPPG_BACKUP_CONFIG" in found["properties"]["config_file"]["description"]
    assert "WIB" in fields["before"]["description"]


def test_a_time_without_a_zone_is_wib_and_one_with_a_zone_keeps_it() -> None:
    assert parse_time("2026-12-01 10:30") == datetime(2026, 12, 1, 10, 30, tzinfo=WIB)
    assert parse_time("2026-12-01T10:30:15 WIB") == datetime(2026, 12, 1, 10, 30, 15, tzinfo=WIB)
    assert parse_time("2026-12-01T03:30Z") == datetime(2026, 12, 1, 3, 30, tzinfo=UTC)
    assert parse_time("") is None
    assert RestoreRequest(before="2026-12-01 10:30").before == datetime(2026, 12, 1, 3, 30, tzinfo=UTC)
    with pytest.raises(ValidationError, match="not a time like 2026-12-01 10:30"):
        RestoreRequest(before="1 Desember jam 3")


def test_empty_fields_mean_the_settings_and_the_form_round_trips() -> None:
    request = RestoreRequest.model_validate(schema()["properties"]["request"]["default"])
    assert request.backup_id is None and request.target_url is None and request.before is None
    assert RestoreRequest.model_validate(request.model_dump(mode="json")) == request


def test_the_backup_list_becomes_a_dropdown_and_a_picked_label_names_its_backup() -> None:
    label = "erp_sppg_backup_20261201_200000 · 2026-12-02 03:00 WIB · 3.3 MB · verified"
    patched = with_choices(schema(), [label])
    field = patched["definitions"]["RestoreRequest"]["properties"]["backup_id"]
    assert field["enum"] == [NEWEST, label] and field["default"] == NEWEST
    assert patched["properties"]["request"]["default"]["backup_id"] == NEWEST
    assert RestoreRequest(backup_id=NEWEST).backup_id is None
    assert chosen_id(label) == "erp_sppg_backup_20261201_200000"
