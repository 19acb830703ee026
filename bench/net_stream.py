"""A 320x240 / 30 fps stream through an emulated NAT and link vs plain loopback: fps and CPU.

    .venv/bin/python bench/net_stream.py [--seconds 10]

Both peers live in this process; CPU is this process's CPU time over the measured window.
Target (issue #5): >= 28 fps received, CPU <= 1.5x the loopback run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rtclab import Peer, SignalingServer
from rtclab.net import Link, Network


async def run(url: str, seconds: float, network: Network | None, room: str) -> tuple[float, float]:
    options: dict[str, Any] = {"room": room, "audio": False, "data": False}
    if network is not None:
        ice = network.ice_config(stun=True)
        receiver = Peer(
            "rx",
            url,
            video=False,
            ice=ice,
            network=network.host("rx", "restricted-cone"),
            **options,
        )
        sender = Peer(
            "tx",
            url,
            fps=30,
            ice=ice,
            network=network.host("tx", "symmetric", link=Link(delay_ms=10)),
            **options,
        )
    else:
        receiver = Peer("rx", url, video=False, **options)
        sender = Peer("tx", url, fps=30, **options)
    try:
        await receiver.join()
        await sender.join()
        await sender.wait_connected(count=1)
        await asyncio.sleep(2.0)  # warm up the encoder
        conn = receiver.connections["tx"]
        frames0 = conn.counters.frames_received.get("video", 0)
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
        fps = (conn.counters.frames_received.get("video", 0) - frames0) / elapsed
        return fps, cpu / elapsed
    finally:
        await asyncio.gather(sender.close(), receiver.close())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    async with SignalingServer(port=0) as server:
        assert server.url is not None
        fps_lo, cpu_lo = await run(server.url, args.seconds, None, "loopback")
        with Network(seed=1) as net:
            fps_em, cpu_em = await run(server.url, args.seconds, net, "emulated")
    print(f"loopback : {fps_lo:5.1f} fps, CPU {cpu_lo:.2f} cores")
    print(
        f"emulated : {fps_em:5.1f} fps, CPU {cpu_em:.2f} cores "
        f"(x{cpu_em / cpu_lo:.2f} of loopback; symmetric NAT + 10 ms link -> restricted cone)"
    )


if __name__ == "__main__":
    asyncio.run(main())
