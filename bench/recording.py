"""Event-loop lag while recording a received 640x480 @ 30 fps stream (prints figures).

    .venv/bin/python bench/recording.py [--seconds 5]

Compares aiortc's MediaRecorder (encodes on the loop) with rtclab's Recorder (a writer
thread encodes and muxes), on one real loopback pair, mp4 (H.264 + AAC).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiortc.contrib.media import MediaRecorder

from rtclab import Peer, SignalingServer
from rtclab.peer.recorder import Recorder
from rtclab.stats.looplag import LoopLagMonitor


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    async with SignalingServer() as server:
        alice = Peer("alice", server.url, data=False, width=640, height=480, fps=30)
        bob = Peer("bob", server.url, data=False, width=640, height=480, fps=30)
        await alice.join()
        await bob.join()
        await bob.wait_connected(count=1)
        while {"audio", "video"} - set(alice.connections["bob"].remote_tracks):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        conn = alice.connections["bob"]
        with tempfile.TemporaryDirectory() as tmp:
            async with LoopLagMonitor() as idle:
                await asyncio.sleep(args.seconds)
            print(
                f"{'no recording':28s} loop lag p50 {idle.median_ms:5.1f}  p99 {idle.p99_ms:6.1f}"
                f"  max {idle.max_ms:6.1f} ms"
            )
            for name in ("aiortc MediaRecorder", "rtclab Recorder"):
                path = Path(tmp) / f"{name.split()[0]}.mp4"
                recorder: MediaRecorder | Recorder
                if name.startswith("aiortc"):
                    recorder = MediaRecorder(str(path))
                    recorder.addTrack(conn.subscribe("video"))
                    recorder.addTrack(conn.subscribe("audio"))
                else:
                    recorder = Recorder(path)
                    recorder.add_track(conn.subscribe("video"))
                    recorder.add_track(conn.subscribe("audio"))
                async with LoopLagMonitor() as lag:
                    await recorder.start()
                    await asyncio.sleep(args.seconds)
                    t0 = time.perf_counter()
                    await recorder.stop()
                    stop_ms = (time.perf_counter() - t0) * 1000
                print(
                    f"{name:28s} loop lag p50 {lag.median_ms:5.1f}  p99 {lag.p99_ms:6.1f}"
                    f"  max {lag.max_ms:6.1f} ms   stop() {stop_ms:5.0f} ms"
                    f"   {path.stat().st_size // 1024} KiB"
                )
        await asyncio.gather(alice.close(), bob.close())


if __name__ == "__main__":
    asyncio.run(main())
