"""RFC 8867 5.1 (variable capacity, one flow) with each shipped estimator, timed.

Each estimator gets its own run, one after the other in this process's loop (no run
competes with another for the CPU): 640x480@30 test-pattern video through the emulated
bottleneck, 1 -> 2.5 -> 0.6 -> 1 Mbps, 50 ms one way, 300 ms queue, shortened by
``--time-scale``. Prints per run the wall time, what the target did at the lowered step,
and the RFC 8868 metrics. The issue's budget: < 40 s at ``--time-scale 0.25`` on 2 cores.
Usage::

    .venv/bin/python bench/bwe_single_flow.py --time-scale 0.25
"""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

from rtclab.cc import DelayBasedEstimator, LossBasedAimd
from rtclab.experiments import bwe_test

ESTIMATORS: list[Any] = [None, DelayBasedEstimator, LossBasedAimd]


def _fmt(value: Any, spec: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "never"
    return format(value, spec)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        "| estimator | run (s) | target before 2.5->0.6 step (kbps) | under 0.6 Mbps after (s) "
        "| 90 % of 1 Mbps after the 0.6->1 step (s) | utilization | queue delay mean / p95 (ms) "
        "| loss |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for estimator in ESTIMATORS:
        result = await bwe_test(
            "5.1", estimator, time_scale=args.time_scale, workers=0, seed=args.seed, progress=False
        )
        if result.errors:
            print(f"| {estimator} | failed: {result.errors} |")
            continue
        steps = result.steps
        down = steps[steps["lowered"]].iloc[0]
        up = steps.iloc[-1]
        total = result.metrics[result.metrics["flow"] == "all"].iloc[0]
        label = next(iter(result.run_seconds))[1]
        print(
            f"| {label} | {result.elapsed_s:.1f} | {_fmt(down['target_before_kbps'], '.0f')} "
            f"| {_fmt(down['seconds_under'])} | {_fmt(up['seconds_to_90'])} "
            f"| {total['utilization']:.2f} | {total['queue_delay_ms_mean']:.0f} / "
            f"{total['queue_delay_ms_p95']:.0f} | {total['loss_ratio']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
