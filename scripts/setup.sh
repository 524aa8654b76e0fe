#!/usr/bin/env bash
# Install what sppg-backup needs on a fresh Debian machine: PostgreSQL binaries, age, zstd, and the
# Python package with its test tools in .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pg_dump >/dev/null || need+=(postgresql-client)
command -v age >/dev/null || need+=(age)
command -v zstd >/dev/null || need+=(zstd)
command -v jq >/dev/null || need+=(jq)  # the README's by-hand snapshot restore (tested)
command -v chattr >/dev/null || need+=(e2fsprogs)
command -v promtool >/dev/null || need+=(prometheus)
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)  # recover server
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the browser test (Playwright drives it; no browser download)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; }
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
out=$(.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1) || { echo "$out"; exit 1; }
.venv/bin/sppg-backup --help >/dev/null
