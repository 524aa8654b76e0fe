"""The restore form as the Prefect UI draws it: filled in, every field editable at once, times in WIB."""

import importlib
import pkgutil
from datetime import UTC, datetime

import pytest
from prefect import Flow
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from sppg_backup import flows
from sppg_backup.db.recovery import RestoreRequest
from sppg_backup.files.restore import FilesRestoreRequest
from sppg_backup.forms import NEWEST, NEWEST_SET, WIB, parse_time
from sppg_backup.full.system import FullRestoreRequest
from sppg_backup.tasks.choices import MENUS, with_choices


def schema(flow: object = None) -> dict:  # type: ignore[type-arg]
    from sppg_backup.flows.restore_database import restore_database

    return parameter_schema((flow or restore_database).fn).model_dump()  # type: ignore[attr-defined,no-any-return]


def every_flow() -> list[object]:

    found = []
    for module in pkgutil.iter_modules(flows.__path__):
        loaded = importlib.import_module(f"sppg_backup.flows.{module.name}")
        found += [v for v in vars(loaded).values() if isinstance(v, Flow) and v.__module__ == loaded.__name__]
    return found


@pytest.mark.parametrize("flow", every_flow(), ids=lambda f: f.name)  # type: ignore[attr-defined]
def test_every_form_opens_filled_in_and_no_field_needs_a_type_pick(flow: Flow) -> None:  # type: ignore[type-arg]
    found = schema(flow)
    assert found["properties"]["config_file"]["default"] == ""
    assert "SPPG_BACKUP_CONFIG" in found["properties"]["config_file"]["description"]
    fields = dict(found["properties"])
    for model in found.get("definitions", {}).values():
        fields.update(model["properties"])
    for name, field in found["properties"].items():
        assert "default" in field, f"{name} of {flow.name} opens empty (a type pick in the UI)"
    for name, field in fields.items():
        assert "anyOf" not in field, f"{name} of {flow.name} would need a type pick in the UI"
        assert len(field.get("description", "")) > 30, f"{name} is not described for the engineer"


def test_the_request_opens_with_its_defaults() -> None:
    found = schema()
    assert found["properties"]["request"]["default"]["safety_backup"] is True
    assert "WIB" in found["definitions"]["RestoreRequest"]["properties"]["before"]["description"]


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
    patched = with_choices(schema(), MENUS["restore-database"], [label])
    field = patched["definitions"]["RestoreRequest"]["properties"]["backup_id"]
    assert field["enum"] == [NEWEST, label] and field["default"] == NEWEST
    assert patched["properties"]["request"]["default"]["backup_id"] == NEWEST
    assert RestoreRequest(backup_id=NEWEST).backup_id is None
    assert RestoreRequest(backup_id=label).backup_id == "erp_sppg_backup_20261201_200000"


def test_every_restore_form_gets_its_own_list() -> None:
    from sppg_backup.flows.restore_files import restore_config
    from sppg_backup.flows.restore_full_system import restore_full_system

    label = "erp_sppg_full_20261201_200000 · 2026-12-02 03:00 WIB · 90.1 MB · 4 parts"
    patched = with_choices(schema(restore_full_system), MENUS["restore-full-system"], [label])
    assert patched["definitions"]["FullRestoreRequest"]["properties"]["set_id"]["enum"] == [NEWEST_SET, label]
    assert FullRestoreRequest.model_validate(patched["properties"]["request"]["default"]).set_id is None
    assert FullRestoreRequest(set_id=label).set_id == "erp_sppg_full_20261201_200000"
    snap = "erp_sppg_config_20261201_200000 · 2026-12-02 03:00 WIB · 3 files · 2.0 KB"
    patched = with_choices(schema(restore_config), MENUS["restore-config"], [snap])
    request = FilesRestoreRequest.model_validate(
        {**patched["properties"]["request"]["default"], "snapshot_id": snap, "target": " /tmp/x "}
    )
    assert request.snapshot_id == "erp_sppg_config_20261201_200000" and request.target == "/tmp/x"
    assert with_choices(schema(), MENUS["restore-config"], [snap]) == schema()  # another form: unchanged
