#!/usr/bin/env bash
# One command for a fresh machine: install rtclab in .venv and run the demo (no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/rtclab demo "$@"
