"""The shipped bandwidth estimators on a clean, a lossy and a narrow emulated link.

For each estimator and link: one aiortc peer sends 640x480@30 test-pattern video to another
through the emulated network (the sender's access link impaired), the receiver runs the
estimator, and after ``--seconds`` the script prints the receiver's last estimate (what went
out as REMB), the median rate the sender sent over the second half and the median RTCP
round-trip time (the queue shows up there). Usage::

    .venv/bin/python bench/cc_estimators.py --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from rtclab.cc import DelayBasedEstimator, LossBasedAimd
from rtclab.net import Link, Network
from rtclab.peer import Peer
from rtclab.signaling.server import SignalingServer
from rtclab.stats import StatsCollector

LINKS: dict[str, Link | None] = {
    "clean": None,
    "loss 10 %": Link(loss=0.1),
    "600 kbps, 64 kB queue": Link(rate_kbps=600, queue_bytes=64_000),
}
ESTIMATORS: dict[str, Any] = {"aiortc default": DelayBasedEstimator, "LossBasedAimd": LossBasedAimd}


async def run(estimator: Any, link: Link | None, seconds: float, seed: int) -> dict[str, Any]:
    with Network(seed=seed) as net:
        async with SignalingServer(port=0) as server:
            assert server.url is not None
            opts: dict[str, Any] = {"room": "bench", "audio": False, "data": False}
            opts.update(ice=net.ice_config(stun=False), width=640, height=480, fps=30)
            sender = Peer("a", server.url, network=net.host("a", "open", link=link), **opts)
            receiver = Peer(
                "b", server.url, network=net.host("b", "open"), video=False,
                estimator=estimator, **opts,
            )  # fmt: skip
            collector = StatsCollector(interval=0.5)
            try:
                await receiver.join()
                await sender.join()
                await sender.wait_connected(count=1)
                collector.add(sender)
                await collector.start()
                await asyncio.sleep(seconds)
                await collector.stop()
                estimation = receiver.connections["a"].estimation
                s = collector.samples
                rows = s[(s["kind"] == "video") & (s["direction"] == "outbound")]
                late = rows[rows["elapsed_s"] >= seconds / 2]
                rtts = late["rtcp_rtt_ms"].dropna()
                return {
                    "estimate_kbps": None
                    if estimation is None or estimation.estimate_bps is None
                    else estimation.estimate_bps / 1000,
                    "sent_kbps": statistics.median(late["bitrate_kbps"].dropna()),
                    "rtt_ms": statistics.median(rtts) if len(rtts) else None,
                }
            finally:
                await asyncio.gather(sender.close(), receiver.close())


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("| estimator | link | last estimate (kbps) | sent, 2nd half (kbps) | RTCP RTT (ms) |")
    print("|---|---|---|---|---|")
    for est_name, estimator in ESTIMATORS.items():
        for link_name, link in LINKS.items():
            r = await run(estimator, link, args.seconds, args.seed)
            print(
                f"| {est_name} | {link_name} | {_fmt(r['estimate_kbps'])} | "
                f"{_fmt(r['sent_kbps'])} | {_fmt(r['rtt_ms'])} |",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
