"""Dashboard refresh cost with a 1-hour window of 20 streams (prints figures; not a test).

    .venv/bin/python bench/dashboard_refresh.py [--pairs 20] [--seconds 3600]

Synthetic 1 Hz samples (every column the panels plot) for ``pairs`` peer -> remote links over
``seconds``; then times ``Dashboard.refresh()`` — the work done in the kernel per update.
Target (issue #3): < 50 ms per refresh.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

import numpy as np

from rtclab.stats import StatsCollector
from rtclab.widgets.dashboard import Dashboard


def rows_for(pairs: int, seconds: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(1)
    t0 = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    rows: list[dict[str, object]] = []
    for s in range(seconds):
        t = t0 + timedelta(seconds=s)
        for p in range(pairs):
            common = {
                "t": t,
                "elapsed_s": float(s),
                "peer": f"p{p}",
                "remote": f"q{p}",
                "local_candidate_type": "host",
                "remote_candidate_type": "host",
                "connection_state": "connected",
            }
            rows.append(
                {
                    **common,
                    "kind": "video",
                    "direction": "outbound",
                    "rtcp_rtt_ms": 5 + rng.random(),
                    "remote_fraction_lost": 0.0,
                    "bitrate_kbps": 300 + 20 * rng.random(),
                }
            )
            rows.append(
                {
                    **common,
                    "kind": "video",
                    "direction": "inbound",
                    "jitter_ms": 2 + rng.random(),
                    "frames_per_second": 30.0,
                    "bitrate_kbps": 300 + 20 * rng.random(),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--refreshes", type=int, default=20)
    args = parser.parse_args()
    collector = StatsCollector(window=None, max_rows=None)
    dash = Dashboard(collector, window_s=args.seconds)
    rows = rows_for(args.pairs, args.seconds)
    t0 = time.perf_counter()
    dash._ingest(rows)
    ingest_ms = (time.perf_counter() - t0) * 1000
    dash.refresh()
    more = rows_for(args.pairs, args.refreshes)  # one new poll's rows per refresh, as live
    step = 2 * args.pairs
    times = []
    for i in range(args.refreshes):
        batch = more[i * step : (i + 1) * step]
        for row in batch:
            row["elapsed_s"] = float(args.seconds + i)
        dash._ingest(batch)
        t0 = time.perf_counter()
        dash.refresh()
        times.append((time.perf_counter() - t0) * 1000)
    print(
        f"{args.pairs} streams x {args.seconds} s at 1 Hz ({len(rows)} rows), "
        f"{len(dash.figure.data)} traces; one-off ingest {ingest_ms:.0f} ms"
    )
    print(
        f"refresh: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms "
        f"(max_points={dash.max_points} per trace)"
    )
    dash.close()


if __name__ == "__main__":
    main()
