"""QoE overhead: a lab's received fps at N pairs with QoE on (default) and off, in one run.

    .venv/bin/python bench/qoe_overhead.py [--pairs 12] [--seconds 10] [--rounds 2]

Each round starts a Lab with ``qoe=True`` and one with ``qoe=False`` in turn (order
alternating between rounds, so drift on a shared machine falls on both): N rooms of one
sender (320x240 @ 30 fps test pattern, no audio/data) and one receive-only viewer, stats at
1 Hz, measured for ``--seconds`` after a 3 s settle. Budget (issue #13): QoE on within 3 %
of QoE off. On a shared machine the fps moves with other processes' load, so the process's
own CPU time per received frame (senders' encoding included) is printed too: the cost of QoE
is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from rtclab import Lab
from rtclab.stats.looplag import LoopLagMonitor


async def measure(qoe: bool, pairs: int, seconds: float) -> tuple[float, float, float, int]:
    """Median received fps per stream, loop lag p99 (ms), process CPU ms per received
    frame, frames rows of the run."""
    lab = Lab(stats_interval=1.0, qoe=qoe)
    await lab.start()
    try:
        receivers = []
        for i in range(pairs):
            options = {"room": f"pair{i}", "audio": False, "data": False, "fps": 30.0}
            await lab.peer(f"s{i}", **options)
            receivers.append(await lab.peer(f"r{i}", video=False, **options))
        await asyncio.gather(*(r.wait_connected(count=1, timeout=60) for r in receivers))
        await asyncio.sleep(3.0)

        def counts() -> list[int]:
            return [
                r.connections[f"s{r.name[1:]}"].counters.frames_received.get("video", 0)
                for r in receivers
            ]

        start = counts()
        t0, cpu0 = time.monotonic(), time.process_time()
        async with LoopLagMonitor() as lag:
            await asyncio.sleep(seconds)
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        received = [b - a for a, b in zip(start, counts(), strict=True)]
        fps = [n / elapsed for n in received]
        cpu_per_frame = cpu * 1000 / max(1, sum(received))
        return statistics.median(fps), lag.p99_ms, cpu_per_frame, len(lab.frames)
    finally:
        await lab.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(args.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for qoe in order:
            fps, lag, cpu_ms, frames = await measure(qoe, args.pairs, args.seconds)
            results[qoe].append(fps)
            cpu[qoe].append(cpu_ms)
            mode = "QoE on " if qoe else "QoE off"
            print(
                f"round {round_ + 1} {mode}: median received fps {fps:.2f}, "
                f"loop lag p99 {lag:.1f} ms, CPU {cpu_ms:.2f} ms per received frame, "
                f"frames rows {frames}"
            )
    on, off = statistics.mean(results[True]), statistics.mean(results[False])
    print(
        f"{args.pairs} pairs, 320x240 @ 30 fps, {args.rounds} rounds x {args.seconds:g} s: "
        f"QoE on {on:.2f} fps, off {off:.2f} fps, on/off {on / off:.3f}; CPU per received "
        f"frame on {statistics.mean(cpu[True]):.2f} ms, off {statistics.mean(cpu[False]):.2f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
