#!/usr/bin/env bash
# Set everything up on a fresh machine and run the daily backup on the embedded default:
# a throwaway PostgreSQL with sample ERP data, file:// storage in .demo/, a generated demo key.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/sppg-backup demo "$@"
