"""Join -> first remote video frame for a pair on loopback (prints figures; not a test).

    .venv/bin/python bench/connect.py [--runs 20] [--fps 30]

For each run a fresh pair: alice is already in the room, bob calls join(); we time from
that call until bob has decoded alice's first frame, and until alice has decoded bob's.
Target (issue #2): median < 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiortc

from rtclab import Peer, SignalingServer


async def one_run(url: str, index: int, fps: float) -> tuple[float, float, float]:
    alice = Peer(f"alice{index}", url, room=f"r{index}", audio=False, data=False, fps=fps)
    bob = Peer(f"bob{index}", url, room=f"r{index}", audio=False, data=False, fps=fps)
    await alice.join()
    t0 = time.perf_counter()
    await bob.join()
    connected = first_bob = first_alice = None
    while first_bob is None or first_alice is None:
        now = time.perf_counter()
        conn = bob.connections.get(alice.name)
        if connected is None and conn is not None and conn.state == "connected":
            connected = now
        if first_bob is None and bob.latest_frame(alice.name) is not None:
            first_bob = now
        if first_alice is None and alice.latest_frame(bob.name) is not None:
            first_alice = now
        if now - t0 > 10:
            raise TimeoutError("no frame within 10 s")
        await asyncio.sleep(0.001)
    await asyncio.gather(alice.close(), bob.close())
    assert connected is not None
    return ((connected - t0) * 1000, (first_bob - t0) * 1000, (first_alice - t0) * 1000)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    async with SignalingServer() as server:
        results = [await one_run(server.url, i, args.fps) for i in range(args.runs)]
    print(f"aiortc {aiortc.__version__}, {args.runs} runs, 320x240 @ {args.fps:g} fps, loopback")
    for label, column in (
        ("join -> connected (joiner)", 0),
        ("join -> first frame at joiner", 1),
        ("join -> first frame at the other", 2),
    ):
        values = sorted(r[column] for r in results)
        p90 = values[int(0.9 * (len(values) - 1))]
        print(
            f"{label:34s} median {statistics.median(values):6.1f} ms   p90 {p90:6.1f} ms"
            f"   min {values[0]:6.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
