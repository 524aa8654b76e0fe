#!/usr/bin/env bash
# The whole test suite: lint, types, unit and integration tests against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# two workers, one test file each at a time (a file's module fixtures stay in one process)
.venv/bin/pytest -n 2 --dist loadfile "$@"
