"""CPU per packet of the link model: the fixed-rate link on main (3768ecb) against today's
fixed-rate, scheduled and trace-driven links, interleaved rounds in one run.

    .venv/bin/python bench/net_link_cost.py [--packets 200000] [--rounds 5]

Budget (issue #14): a scheduled or trace-driven link costs <= 1.2x the CPU per packet of the
link model before schedules existed. The old model is loaded from git (``git show``), so the
comparison needs the repository's history.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from rtclab.net.link import Link, LinkState

BASELINE_COMMIT = "3768ecb"


def _baseline() -> types.ModuleType:
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:rtclab/net/link.py"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("baseline_link")
    sys.modules["baseline_link"] = module  # dataclasses look their module up
    exec(compile(source, "baseline_link.py", "exec"), module.__dict__)
    return module


def _trace_for(kbps: float, seconds: int = 10) -> tuple[int, ...]:
    """A Mahimahi trace of ``kbps`` on average: opportunities spread evenly over the ms."""
    per_ms = kbps / 12_000.0
    stamps, credit = [], 0.0
    for ms in range(1, seconds * 1000 + 1):
        credit += per_ms
        while credit >= 1:
            stamps.append(ms)
            credit -= 1
    return tuple(stamps)


def _cost(make: Callable[[], object], packets: int) -> float:
    """ns per admit: 1,200-byte packets at 1.1x the capacity (a queue that fills and drops)."""
    state = make()
    admit = state.admit  # type: ignore[attr-defined]
    gap = 1200 * 8 / 2200e3  # 2.2 Mbit/s offered into 2 Mbit/s
    start = time.perf_counter_ns()
    for i in range(packets):
        admit(i * gap, 1200)
    return (time.perf_counter_ns() - start) / packets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    old = _baseline()
    common = {"delay_ms": 20.0, "jitter_ms": 2.0, "loss": 0.01, "queue_bytes": 30_000}
    cases: dict[str, Callable[[], object]] = {
        "main: fixed rate": lambda: old.LinkState(old.Link(rate_kbps=2000, **common)),
        "now: fixed rate": lambda: LinkState(Link(rate_kbps=2000, **common)),
        "now: schedule (4 steps)": lambda: LinkState(
            Link(rate_kbps=2000, schedule=((20, 2500), (40, 600), (60, 2000)), **common)
        ),
        "now: Mahimahi trace": lambda: LinkState(Link(trace=_trace_for(2000), **common)),
        "now: fixed rate, queue_ms": lambda: LinkState(
            Link(rate_kbps=2000, **{**common, "queue_ms": 100.0})
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, make in cases.items():
            results[name].append(_cost(make, args.packets))
    base = statistics.median(results["main: fixed rate"])
    print(f"{'link model':28} {'ns/packet':>10} {'x main':>7}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:28} {median:10.0f} {median / base:7.2f}")


if __name__ == "__main__":
    main()
