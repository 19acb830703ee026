"""Lab overhead: N pairs of 320x240 @ 30 fps in one kernel, stats at 1 Hz, a live dashboard.

    .venv/bin/python bench/lab_overhead.py [--pairs 20] [--seconds 10] [--no-lab]

Each pair is its own room: one peer sends video, the other only receives (no audio, no
data). Prints the received frame rate per stream and loop lag, with the Lab's stats
collector and a Dashboard running (or, with --no-lab, aiortc peers alone for comparison).
Target (issue #3): >= 28 fps per stream with 20 pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from rtclab import Lab, Peer, SignalingServer
from rtclab.stats.looplag import LoopLagMonitor


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-lab", action="store_true", help="peers only: no stats, no dashboard")
    args = parser.parse_args()
    lab: Lab | None = None
    server: SignalingServer | None = None
    receivers: list[Peer] = []
    peers: list[Peer] = []
    if args.no_lab:
        server = SignalingServer()
        url = await server.start()
    else:
        lab = Lab(stats_interval=1.0)
        await lab.start()
        dash = lab.dashboard()
        assert lab.url is not None
        url = lab.url
    for i in range(args.pairs):
        options = {"room": f"pair{i}", "audio": False, "data": False, "fps": 30.0}
        if lab is not None:
            sender = await lab.peer(f"s{i}", **options)
            receiver = await lab.peer(f"r{i}", video=False, **options)
        else:
            sender = Peer(f"s{i}", url, **options)
            receiver = Peer(f"r{i}", url, video=False, **options)
            await sender.join()
            await receiver.join()
        peers += [sender, receiver]
        receivers.append(receiver)
    await asyncio.gather(*(r.wait_connected(count=1, timeout=60) for r in receivers))
    await asyncio.sleep(3.0)  # settle
    start = {
        r.name: r.connections[f"s{r.name[1:]}"].counters.frames_received.get("video", 0)
        for r in receivers
    }
    t0 = time.monotonic()
    async with LoopLagMonitor() as lag:
        await asyncio.sleep(args.seconds)
    elapsed = time.monotonic() - t0
    fps = sorted(
        (r.connections[f"s{r.name[1:]}"].counters.frames_received.get("video", 0) - start[r.name])
        / elapsed
        for r in receivers
    )
    mode = "peers only" if args.no_lab else "Lab + stats 1 Hz + live Dashboard"
    print(f"{args.pairs} pairs, 320x240 @ 30 fps, {mode}, {args.seconds:g} s")
    print(
        f"received fps per stream: min {fps[0]:.1f}  median {statistics.median(fps):.1f}"
        f"  max {fps[-1]:.1f}"
    )
    print(f"loop lag: p50 {lag.median_ms:.1f} ms  p99 {lag.p99_ms:.1f} ms  max {lag.max_ms:.1f} ms")
    if lab is not None:
        print(f"dashboard refreshes: {dash.refreshes}, samples rows: {len(lab.samples)}")
        await lab.stop()
    else:
        await asyncio.gather(*(p.close() for p in peers))
        assert server is not None
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
