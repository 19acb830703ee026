#!/usr/bin/env bash
# One command for a fresh machine: install everything the tests need, lint, type-check, run all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "== ruff"; .venv/bin/ruff check rtclab tests && .venv/bin/ruff format --check -q rtclab tests bench
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest -q -p no:cacheprovider --durations=25 "$@"
