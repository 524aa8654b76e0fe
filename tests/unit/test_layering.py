"""The core never imports Prefect, so it runs and tests without a server."""

import ast
from pathlib import Path

CORE = Path(__file__).parents[2] / "sppg_backup"
ALLOWED = {"cli.py", "cli_files.py", "cli_full.py", "cli_runs.py", "demo.py"}  # the edge: they run flows


def test_core_never_imports_prefect_or_the_task_layer() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        if path.name in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("prefect", "prefect_gcp", "tasks", "flows")
            ]
    assert offenders == []
