"""Load test at a few sizes, one and two worker processes (prints a markdown table).

    .venv/bin/python bench/load.py [--peers 24 48] [--room-size 3] [--workers 1 2]

Each run is ``rtclab.load_test`` against a fresh local server: N peers (160x120 @ 15 fps
video, no audio) join at once in rooms of ``--room-size``, from W worker processes; the
table gives join -> connected and join -> first frame percentiles (every remote of the
room), the frame rate received per stream while the call is held, failures, and the
machine's 1-minute load average before the run (other work shares the cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os

import pandas as pd

from rtclab.experiments import load_test


def _pct(summary: pd.DataFrame, metric: str) -> str:
    row = summary.loc[metric]
    return " / ".join(f"{row[f'p{q}']:.0f}" for q in (50, 90, 99))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--room-size", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    print("| peers | rooms | workers | connected | join->connected p50 / p90 / p99 (ms) "
          "| join->first frame p50 / p90 / p99 (ms) | fps per stream p50 | failures "
          "| load avg |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for peers in args.peers:
        for workers in args.workers:
            rooms = peers // args.room_size
            busy = os.getloadavg()[0]  # the 1-minute load average before the run
            result = await load_test(peers, rooms, workers, duration=args.duration,
                                     progress=False)  # fmt: skip
            s = result.summary
            fails = ", ".join(f"{k}: {v}" for k, v in result.failures.items()) or "-"

            print(
                f"| {peers} | {rooms} | {workers} | {int(result.frame['connected'].sum())} "
                f"| {_pct(s, 'connected_ms')} | {_pct(s, 'first_frame_ms')} "
                f"| {s.loc['frames_per_second', 'p50']:.1f} | {fails} | {busy:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
