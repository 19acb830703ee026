"""Peers in worker processes: N pairs with ``Lab(workers=2)`` against aiortc alone in one
process, side by side in one run, then a 6-peer mesh room on the workers.

    .venv/bin/python bench/lab_workers.py [--pairs 48] [--seconds 10] [--workers 2] [--mesh 6]

Each pair is a room: a 320x240 @ 30 fps test pattern one way, nothing back (as
``bench/aiortc_baseline.py --source pattern`` and ``bench/lab_overhead.py``). The lab runs
with its defaults (stats at 1 Hz, QoE frame tags) and a live Dashboard. The lab's figure is
each receiver's ``frames_per_second`` (inbound video rows) over the window; aiortc alone
counts decoded frames. Targets (issue 15): >= 1.6x aiortc alone at 48 pairs on 2 cores;
the mesh room >= 25 fps per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from aiortc_baseline import _pair  # type: ignore[import-not-found]

from rtclab import IceConfig, Lab

# many peers join a saturated machine: give ICE time (the default gives up after 10 s)
ICE = IceConfig(connect_timeout=60.0)


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, every thread) used so far by this process and ``pids``."""
    total = time.process_time()
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Window:
    """The measurement window: wall time and the CPU the run got in it (a shared machine
    gives a run less than its cores: frames per CPU second compare fairly across runs)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.cpu0, self.t0 = _cpu_s(pids), time.monotonic()

    def end(self) -> tuple[float, float]:
        return time.monotonic() - self.t0, _cpu_s(self.pids) - self.cpu0


async def aiortc_alone(pairs: int, seconds: float) -> tuple[list[float], float, float]:
    made = [await _pair("pattern", 320, 240) for _ in range(pairs)]
    deadline = time.monotonic() + 60
    while any(r.connectionState != "connected" for _, r, _ in made):
        if time.monotonic() > deadline:
            raise SystemExit("aiortc alone: not all pairs connected within 60 s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(3.0)
    start = [c[0] for _, _, c in made]
    window = Window([])
    await asyncio.sleep(seconds)
    elapsed, cpu = window.end()
    fps = [(c[0] - s) / elapsed for (_, _, c), s in zip(made, start, strict=True)]
    for s, r, _ in made:
        await s.close()
        await r.close()
    return fps, elapsed, cpu


def _per_stream_fps(lab: Lab, since_s: float, peers: set[str]) -> list[float]:
    s = lab.samples
    rows = s[(s.kind == "video") & (s.direction == "inbound") & (s.elapsed_s > since_s)]
    rows = rows[rows.peer.isin(peers)]
    return [float(v) for v in rows.groupby(["peer", "remote"]).frames_per_second.mean()]


async def lab_pairs(
    pairs: int, seconds: float, workers: int, qoe: bool = True
) -> tuple[list[float], float, float]:
    async with Lab(workers=workers, name="bench-pairs", ice=ICE, qoe=qoe) as lab:
        lab.dashboard()
        options: dict[str, Any] = {"audio": False, "data": False, "fps": 30.0}

        async def pair(i: int) -> Any:
            await lab.peer(f"s{i}", room=f"pair{i}", **options)
            return await lab.peer(f"r{i}", room=f"pair{i}", video=False, **options)

        # all at once, as aiortc_baseline makes its pairs: joins done before media saturates
        receivers = await asyncio.gather(*(pair(i) for i in range(pairs)))
        await asyncio.gather(*(r.wait_connected(count=1, timeout=60) for r in receivers))
        await asyncio.sleep(3.0)
        assert lab.workers is not None
        since, window = float(lab.samples.elapsed_s.max()), Window(lab.workers.pids)
        await asyncio.sleep(seconds + 0.5)
        elapsed, cpu = window.end()
        return _per_stream_fps(lab, since, {r.name for r in receivers}), elapsed, cpu


async def lab_mesh(size: int, seconds: float, workers: int) -> tuple[list[float], float, float]:
    async with Lab(workers=workers, name="bench-mesh", ice=ICE) as lab:
        lab.dashboard()
        await asyncio.gather(*(lab.peer(f"m{i}", room="mesh", fps=30.0) for i in range(size)))
        await lab.wait_connected(timeout=60)
        await asyncio.sleep(3.0)
        assert lab.workers is not None
        since, window = float(lab.samples.elapsed_s.max()), Window(lab.workers.pids)
        await asyncio.sleep(seconds + 0.5)
        elapsed, cpu = window.end()
        return _per_stream_fps(lab, since, {f"m{i}" for i in range(size)}), elapsed, cpu


def _line(label: str, fps: list[float], elapsed: float, cpu: float) -> str:
    fps = sorted(fps)
    per_cpu = sum(fps) * elapsed / cpu
    return (f"| {label} | {len(fps)} | {fps[0]:.1f} | {statistics.median(fps):.1f} | "
            f"{fps[-1]:.1f} | {cpu / elapsed:.2f} | {per_cpu:.0f} |")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mesh", type=int, default=6, help="0: no mesh room")
    parser.add_argument("--no-qoe", action="store_true", help="Lab(qoe=False): no frame tags")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    alone, *alone_cpu = await aiortc_alone(args.pairs, args.seconds)
    spread, *spread_cpu = await lab_pairs(args.pairs, args.seconds, args.workers, not args.no_qoe)
    mesh, *mesh_cpu = (
        await lab_mesh(args.mesh, args.seconds, args.workers) if args.mesh else ([], 0, 0)
    )
    print("| run | streams | min fps | median fps | max fps | cores used | frames per CPU s |")
    print("|---|---|---|---|---|---|---|")
    print(_line(f"{args.pairs} pairs, aiortc alone, one process", alone, *alone_cpu))
    lab = f"Lab(workers={args.workers}{', qoe=False' if args.no_qoe else ''}) + stats + dashboard"
    print(_line(f"{args.pairs} pairs, {lab}", spread, *spread_cpu))
    if mesh:
        print(_line(f"{args.mesh}-peer mesh, Lab(workers={args.workers}) + stats + dashboard",
                    mesh, *mesh_cpu))  # fmt: skip
    ratio = statistics.median(spread) / statistics.median(alone)
    print(f"\nratio (median fps per stream, workers / alone): {ratio:.2f}x")
    print(f"load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
