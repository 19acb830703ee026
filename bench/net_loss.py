"""Impairment as the issue states it: 50 ms one-way delay -> RTT, 5 % loss over 30 s of video.

    .venv/bin/python bench/net_loss.py [--seconds 30]

Targets (issue #5): rtt_ms = 100 ms +- 15 %; loss fraction 5 % +- 2 points; jitter rises with
configured jitter.
"""

from __future__ import annotations

import argparse
import asyncio

from rtclab.experiments.impairment import impairment_sweep
from rtclab.net import Link


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result = await impairment_sweep(
        links=[Link(delay_ms=50), Link(loss=0.05), Link(jitter_ms=10), Link(jitter_ms=30)],
        duration=args.seconds,
        progress=False,
    )
    columns = [
        "setting",
        "rtt_ms",
        "jitter_ms",
        "loss_fraction",
        "link_loss_fraction",
        "bitrate_kbps",
        "frames_per_second",
        "packets_sent",
    ]
    print(result.frame[columns].round(3).to_string(index=False))
    print(f"({result.elapsed_s:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
