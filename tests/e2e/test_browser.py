"""The on-call engineer's path, in a real browser (Debian's chromium, driven by Playwright): open the
restore-database deployment, pick a backup from the dropdown, submit, follow the run to Completed, read its
artifact; and a failed run retried with the Retry button, its safety backup not taken twice."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from sppg_backup.db.catalog import list_backups
from sppg_backup.settings import load_settings
from sppg_backup.storage.local import LocalStorage
from tests.dbcheck import table_contents
from tests.e2e.client import deployment, task_states
from tests.e2e.tools import break_pg_restore

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
# Set to a folder (e.g. docs/ui) to keep the screenshots the README shows.
SHOTS = os.environ.get("SPPG_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run scripts/setup.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        found = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield found
        found.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    # An engineer's browser in UTC: the form must still mean WIB.
    context = browser.new_context(timezone_id="UTC", viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    found = context.new_page()
    yield found
    context.close()


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", Path(SHOTS) / f"{name}.png")


def field(scope: Any, label: str) -> Any:
    """The form's block for the field whose label starts with `label`."""
    return scope.locator(
        "xpath=.//div[contains(concat(' ',normalize-space(@class),' '),' schema-form-property ')]"
        "[./div[contains(@class,'p-label__header')]//span[contains(@class,'schema-form-property__label')]"
        f"[starts-with(normalize-space(.),'{label}')]]"
    ).first


def ui(api: str) -> str:
    return api.removesuffix("/api")


def submit_restore(page: Any, api: str, backup: str | None, config: Path) -> UUID:
    """Run > Custom run on restore-database/on-demand: pick the backup, tick confirm, name the config, Submit."""
    found = deployment(api, "restore-database/on-demand")
    page.goto(f"{ui(api)}/deployments/deployment/{found.id}")
    page.locator("button.run-menu__run-button").click()
    page.get_by_text("Custom run", exact=True).click()
    page.wait_for_url(re.compile(r"/deployments/deployment/.+/run"))
    page.locator(".schema-form-property").first.wait_for()
    if backup:
        field(page, "Backup Id").locator(".p-select-button__icon").first.click()
        page.locator(".p-select-options [role=option]", has_text=backup).first.click()
    field(page, "Confirm").locator("[role=switch]").first.click()
    field(page, "config_file").locator("textarea, input").first.fill(str(config))
    for _ in range(3):  # a busy SQLite server may answer 503; the form stays open and Submit is pressed again
        with page.expect_response(lambda r: r.request.method == "POST" and "/create_flow_run" in r.url) as made:
            page.get_by_role("button", name="Submit", exact=True).click()
        if made.value.status != 503:
            break
        page.wait_for_timeout(2000)
    assert made.value.status == 201, made.value.text()
    return UUID(made.value.json()["id"])


def final_state(page: Any, api: str, run_id: UUID, was: str | None = None) -> str:
    """The run's final state as its page shows it (once it is no longer `was`)."""
    if f"/runs/flow-run/{run_id}" not in page.url:
        page.goto(f"{ui(api)}/runs/flow-run/{run_id}")
    from playwright.sync_api import expect

    badge = page.locator(".page-heading .state-badge").first
    if was:
        expect(badge).not_to_have_text(was, timeout=60_000)
    expect(badge).to_have_text(re.compile("Completed|Failed|Crashed"), timeout=240_000)
    return str(badge.inner_text()).strip()


def artifact_text(page: Any) -> str:
    page.locator("li.p-tab#artifacts").click()
    page.locator(".flow-run-artifacts a[href^='/artifacts/artifact/']", has_text="restore-database").first.click()
    view = page.locator(".artifact-data-view").first
    view.wait_for()
    return str(view.inner_text())


def offer(api: str, config: Path) -> None:
    """What every backup run does at its end: the restore form's list is refreshed (here for this scene's storage)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sppg_backup.tasks.choices import offer_backups

    with temporary_settings({PREFECT_API_URL: api}):
        assert offer_backups.fn(load_settings(config)) >= 1


def test_an_engineer_restores_a_backup_picked_from_the_form(
    scene: dict[str, Any], worker: str, page: Any, tmp_path: Path
) -> None:
    offer(worker, scene["config"])
    run_id = submit_restore(page, worker, scene["backup"].id, scene["config"])
    shot(page, tmp_path, "restore-submitted")
    assert final_state(page, worker, run_id) == "Completed"
    text = artifact_text(page)
    shot(page, tmp_path, "restore-artifact")
    assert f"Restore OK: {scene['backup'].id}" in text and "safety backup" in text
    assert table_contents(scene["url"]) == scene["good"]


def test_retry_in_the_ui_keeps_the_safety_backup(
    scene: dict[str, Any], worker: str, page: Any, tmp_path: Path, postgres_cluster: Any
) -> None:
    original = break_pg_restore(scene, postgres_cluster)
    offer(worker, scene["config"])
    run_id = submit_restore(page, worker, None, scene["config"])
    assert final_state(page, worker, run_id) == "Failed"
    assert "Restore FAILED" in artifact_text(page)
    scene["config"].write_text(original)  # the fix
    page.goto(f"{ui(worker)}/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Retry", exact=True).click()
    page.locator(".p-modal").first.get_by_role("button", name=re.compile("^Retry")).click()
    assert final_state(page, worker, run_id, was="Failed") == "Completed"
    shot(page, tmp_path, "restore-retried")
    states = task_states(worker, run_id)
    assert states["safety-backup"] == "Cached" and states["download-backup"] == "Cached"
    backups = list_backups(LocalStorage(scene["tmp"] / "storage")).backups
    assert [m.purpose for m in backups] == ["backup", "safety"]
    assert table_contents(scene["url"]) == scene["good"]
