#!/usr/bin/env bash
# The code checks CI runs before the tests (seconds): lint, format and types. Run it before every commit.
# `scripts/check.sh --fix` applies ruff's safe fixes and formatting first; `scripts/check.sh --fast` runs the
# fast test tier (`pytest -m "not e2e"`, every module, under 90 s on 2 cores) after the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=0
fast=0
for arg in "$@"; do
    case "$arg" in
        --fix) fix=1 ;;
        --fast) fast=1 ;;
        *) echo "usage: scripts/check.sh [--fix] [--fast]" >&2; exit 2 ;;
    esac
done
if [[ $fix == 1 ]]; then
    python -m ruff check --fix .
    python -m ruff format .
fi
python -m ruff check .
python -m ruff format --check .
python -m mypy
if [[ $fast == 1 ]]; then
    python -m pytest -q -m "not e2e"
fi
