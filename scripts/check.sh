#!/usr/bin/env bash
# The code checks CI runs before the tests (seconds): lint, format and types. Run it before every commit.
# `scripts/check.sh --fix` applies ruff's safe fixes and formatting first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fix" ]]; then
    python -m ruff check --fix .
    python -m ruff format .
fi
python -m ruff check .
python -m ruff format --check .
python -m mypy
