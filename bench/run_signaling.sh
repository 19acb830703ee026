#!/usr/bin/env bash
# Run the shared signaling benchmark (../shared/bench/signaling) against rtclab's server.
#   bench/run_signaling.sh                         # A (node ws) vs rtclab, loads a and b, 3 rounds
#   bench/run_signaling.sh --rounds 1              # any bench.py option is passed through
#   bench/run_signaling.sh --load lat=20x200w1
#   bench/run_signaling.sh --deflate
# The benchmark runs from a private copy in ${TMPDIR:-/tmp} (shared/ stays untouched, even as root);
# results land in that copy's results/ folder (the path is printed at the end).
set -euo pipefail
root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
shared="$root/../shared/bench/signaling"
[ -x "$shared/run.sh" ] || { echo "benchmark not found at $shared" >&2; exit 1; }
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "no venv python at $py" >&2; exit 1; }

work="${TMPDIR:-/tmp}/rtclab-signaling-bench"
mkdir -p "$work"
cp -r "$shared/." "$work/"
chmod -R u+w "$work"

servers=(--server "rtclab=$py -m rtclab.signaling --port {port}")
exec "$work/run.sh" "${servers[@]}" "$@"
