"""The Prometheus rules pass their promtool unit tests; rules and dashboard use only metrics we write."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sppg_backup.ops.metrics import HELP

DEPLOY = Path(__file__).parents[2] / "deployments"
PROMTOOL = shutil.which("promtool")


def metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(backup_[a-z_]+)\b", expr)}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (scripts/setup.sh installs it)")
def test_alert_rules_pass_promtool_unit_tests() -> None:
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([str(PROMTOOL), *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_is_installed_by_setup() -> None:
    assert "prometheus" in (Path(__file__).parents[2] / "scripts" / "setup.sh").read_text()
    assert PROMTOOL is not None, "promtool missing: run scripts/setup.sh"


def test_rules_cover_the_guides_four_conditions_with_our_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"BackupMissing", "BackupSizeDropped", "BackupVerificationFailed", "BackupStorageAlmostFull"} <= names
    used = set().union(*(metric_names(r["expr"]) for r in rules))
    assert used <= set(HELP)


def test_dashboard_queries_only_our_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "sppg-backup.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used <= set(HELP) and "backup_last_success_timestamp" in used and "backup_verification_status" in used
