"""aiortc alone, no rtclab: N pairs of plain RTCPeerConnections in one process, one video
stream each, for comparison with bench/lab_overhead.py.

    .venv/bin/python bench/aiortc_baseline.py [--pairs 20] [--seconds 10] [--source pattern]

``--source blank`` sends aiortc's own ``VideoStreamTrack`` (a still green frame: almost
free to encode), ``--source pattern`` rtclab's moving test pattern (what a lab sends), and
``--source live`` the same pattern as a lab's peers take it: a saturated encoder gets the
frame due now, with its capture time, instead of every frame it missed stamped 1/30 s
apart (which makes the encoder's rate control spend fewer bits per frame than the target).
Offer/answer are exchanged in memory; ICE gathers on loopback only. Prints the received
frame rate per stream, loop lag and the process's CPU time per received frame.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import statistics
import time
from typing import Any

import av
from _threads import cpu_report, thread_cpu  # bench/_threads.py, beside this script
from aiortc import RTCPeerConnection, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from rtclab.ice.config import IceConfig
from rtclab.ice.gathering import gathering_on
from rtclab.peer.media import TestPatternTrack
from rtclab.stats.looplag import LoopLagMonitor


class _Blank(VideoStreamTrack):
    """aiortc's reference source at a chosen size (its default is 640x480)."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self._frame = av.VideoFrame(width=width, height=height, format="yuv420p")
        for plane in self._frame.planes:
            plane.update(bytes(plane.buffer_size))

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=self._frame.width, height=self._frame.height)
        frame.pts, frame.time_base = pts, fractions.Fraction(time_base)
        return frame


class _LivePattern(TestPatternTrack):
    """The pattern as a camera gives it: an encoder that falls behind gets the frame due
    now (ids and timestamps jump), not every missed one in a burst, stamped 1/30 s apart."""

    async def recv(self) -> av.VideoFrame:
        self.skip_missed()
        return await super().recv()


async def _pair(source: str, width: int, height: int) -> tuple[Any, Any, list[int]]:
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    track: Any = _Blank(width, height)
    if source != "blank":
        track = (_LivePattern if source == "live" else TestPatternTrack)(width, height, 30)
    sender.addTrack(track)
    count = [0]
    tasks: list[asyncio.Task[None]] = []

    @receiver.on("track")
    def _on_track(remote: Any) -> None:
        async def consume() -> None:
            try:
                while True:
                    await remote.recv()
                    count[0] += 1
            except MediaStreamError:
                return

        tasks.append(asyncio.ensure_future(consume()))

    with gathering_on(IceConfig().interfaces):
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
    return sender, receiver, count


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--source", choices=["blank", "pattern", "live"], default="pattern")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args()
    pairs = [await _pair(args.source, args.width, args.height) for _ in range(args.pairs)]
    deadline = time.monotonic() + 60
    while any(r.connectionState != "connected" for _, r, _ in pairs):
        if time.monotonic() > deadline:
            raise SystemExit("not all pairs connected within 60 s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(3.0)  # settle

    async def rtp_totals() -> tuple[float, float]:
        """Bytes the senders sent and packets the receivers received so far."""
        sent = received = 0.0
        for sender, receiver, _ in pairs:
            for stats in [
                *(await sender.getStats()).values(),
                *(await receiver.getStats()).values(),
            ]:
                kind = getattr(stats, "type", None)
                if kind == "outbound-rtp":
                    sent += stats.bytesSent
                elif kind == "inbound-rtp":
                    received += stats.packetsReceived
        return sent, received

    start = [c[0] for _, _, c in pairs]
    sent0, packets0 = await rtp_totals()
    t0, cpu0, threads0 = time.monotonic(), time.process_time(), thread_cpu()
    async with LoopLagMonitor() as lag:
        await asyncio.sleep(args.seconds)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    threads = thread_cpu()
    received = [c[0] - s for (_, _, c), s in zip(pairs, start, strict=True)]
    sent, packets = (b - a for a, b in zip((sent0, packets0), await rtp_totals(), strict=True))
    fps = sorted(n / elapsed for n in received)
    print(f"{args.pairs} pairs, {args.width}x{args.height} @ 30 fps, aiortc alone, "
          f"source {args.source}, {args.seconds:g} s")  # fmt: skip
    print(
        f"received fps per stream: min {fps[0]:.1f}  median {statistics.median(fps):.2f}"
        f"  max {fps[-1]:.1f}"
    )
    print(f"loop lag: p50 {lag.median_ms:.1f} ms  p99 {lag.p99_ms:.1f} ms  max {lag.max_ms:.1f} ms")
    print(cpu_report(cpu, threads0, threads, sum(received)))
    print(
        f"RTP payload {sent / max(1, sum(received)):.0f} bytes per received frame"
        f", {packets / max(1, sum(received)):.2f} packets"
    )
    for s, r, _ in pairs:
        await s.close()
        await r.close()


if __name__ == "__main__":
    asyncio.run(main())
