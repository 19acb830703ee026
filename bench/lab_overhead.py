"""Lab overhead: N pairs of 320x240 @ 30 fps in one kernel, stats at 1 Hz, a live dashboard.

    .venv/bin/python bench/lab_overhead.py [--pairs 20] [--seconds 10] [--no-lab]
    .venv/bin/python bench/lab_overhead.py --compare [--pairs 32] [--rounds 4]

Each pair is its own room: one peer sends video, the other only receives (no audio, no
data). Prints the received frame rate per stream, loop lag and the process's CPU time per
received frame, with the Lab's stats collector and a Dashboard running (or, with --no-lab,
rtclab peers alone).

``--compare`` runs ``bench/aiortc_baseline.py`` (aiortc alone) with ``--source pattern``
and ``--source live``, and this script (the lab), in alternating fresh processes, same
pairs and window, ``--rounds`` times each, and prints the rates and the lab's ratio to
each per round and their medians (issue 15: the lab at >= 0.95x aiortc alone at 32 pairs).
``--no-qoe`` runs the lab without frame tags. Fresh processes, because one process's leftovers
(threads, garbage, caches) would weigh on the next measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _threads import cpu_report, thread_cpu  # bench/_threads.py, beside this script

from rtclab import Lab, Peer, SignalingServer
from rtclab.ice.config import IceConfig
from rtclab.stats.looplag import LoopLagMonitor

_FPS = re.compile(r"median ([0-9.]+)")
_CPU = re.compile(r"CPU ([0-9.]+) ms per received frame")
_LAG = re.compile(r"loop lag: p50 [0-9.]+ ms  p99 ([0-9.]+) ms")


async def measure(args: argparse.Namespace) -> None:
    lab: Lab | None = None
    server: SignalingServer | None = None
    receivers: list[Peer] = []
    peers: list[Peer] = []
    # a saturated loop connects the last pairs slowly (aiortc alone waits forever)
    ice = IceConfig(connect_timeout=60.0)
    if args.no_lab:
        server = SignalingServer()
        url = await server.start()
    else:
        lab = Lab(stats_interval=1.0, ice=ice, qoe=not args.no_qoe)
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
            sender = Peer(f"s{i}", url, ice=ice, qoe=not args.no_qoe, **options)
            receiver = Peer(f"r{i}", url, video=False, ice=ice, qoe=not args.no_qoe, **options)
            await sender.join()
            await receiver.join()
        peers += [sender, receiver]
        receivers.append(receiver)
    await asyncio.gather(*(r.wait_connected(count=1, timeout=60) for r in receivers))
    await asyncio.sleep(3.0)  # settle

    def counts() -> list[int]:
        return [
            r.connections[f"s{r.name[1:]}"].counters.frames_received.get("video", 0)
            for r in receivers
        ]

    def payload() -> int:
        return sum(
            r.connections[f"s{r.name[1:]}"].counters.rtp_bytes_received.get("video", 0)
            for r in receivers
        )

    def packets() -> int:
        return sum(
            r.connections[f"s{r.name[1:]}"].counters.rtp_packets_received.get("video", 0)
            for r in receivers
        )

    start, payload0, packets0 = counts(), payload(), packets()
    t0, cpu0, threads0 = time.monotonic(), time.process_time(), thread_cpu()
    async with LoopLagMonitor() as lag:
        await asyncio.sleep(args.seconds)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    threads = thread_cpu()
    received = [b - a for a, b in zip(start, counts(), strict=True)]
    fps = sorted(n / elapsed for n in received)
    mode = "peers only" if args.no_lab else "Lab + stats 1 Hz + live Dashboard"
    mode += ", no frame tags" if args.no_qoe else ""
    print(f"{args.pairs} pairs, 320x240 @ 30 fps, {mode}, {args.seconds:g} s")
    print(
        f"received fps per stream: min {fps[0]:.1f}  median {statistics.median(fps):.2f}"
        f"  max {fps[-1]:.1f}"
    )
    print(f"loop lag: p50 {lag.median_ms:.1f} ms  p99 {lag.p99_ms:.1f} ms  max {lag.max_ms:.1f} ms")
    print(cpu_report(cpu, threads0, threads, sum(received)))
    print(
        f"RTP payload {(payload() - payload0) / max(1, sum(received)):.0f} bytes per received frame"
        f", {(packets() - packets0) / max(1, sum(received)):.2f} packets"
    )
    if lab is not None:
        print(f"dashboard refreshes: {dash.refreshes}, samples rows: {len(lab.samples)}")
        await lab.stop()
    else:
        await asyncio.gather(*(p.close() for p in peers))
        assert server is not None
        await server.stop()


def _run(script: str, pairs: int, seconds: float, *extra: str) -> tuple[float, float, float]:
    """One fresh process: its median received fps, loop lag p99 (ms), CPU ms per frame."""
    here = Path(__file__).resolve().parent
    command = [sys.executable, str(here / script), "--pairs", str(pairs)]
    command += ["--seconds", str(seconds), *extra]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    fps, cpu, lag = _FPS.search(out.stdout), _CPU.search(out.stdout), _LAG.search(out.stdout)
    if out.returncode != 0 or fps is None or cpu is None or lag is None:
        raise SystemExit(f"{script} failed ({out.returncode}): {out.stderr[-2000:]}")
    return float(fps[1]), float(lag[1]), float(cpu[1])


def compare(pairs: int, seconds: float, rounds: int, lab_extra: tuple[str, ...] = ()) -> None:
    """aiortc alone (two sources) and the lab in alternating processes; ratios per round.

    ``pattern`` is aiortc's way: a saturated encoder gets every frame it missed, stamped
    1/30 s apart, so its rate control believes in 30 fps and spends fewer bits per frame.
    ``live`` is the lab's (and a camera's): the frame due now, with its capture time."""
    print(f"{pairs} pairs, 320x240 @ 30 fps, {seconds:g} s windows, {rounds} rounds")
    print(
        "round | aiortc alone, pattern | aiortc alone, live | lab"
        " (fps, lag p99, CPU/frame) | lab / pattern | lab / live"
    )
    runs = {
        "pattern": ("aiortc_baseline.py", "--source", "pattern"),
        "live": ("aiortc_baseline.py", "--source", "live"),
        "lab": ("lab_overhead.py", *lab_extra),
    }
    ratios: dict[str, list[float]] = {"pattern": [], "live": []}
    for round_ in range(rounds):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        got = {name: _run(runs[name][0], pairs, seconds, *runs[name][1:]) for name in order}
        for name in ratios:
            ratios[name].append(got["lab"][0] / got[name][0])
        cells = [f"{fps:.2f} ({lag:.0f} ms, {cpu:.2f} ms)" for fps, lag, cpu in map(got.get, runs)]
        print(
            f"{round_ + 1} | " + " | ".join(cells) + " | "
            f"{ratios['pattern'][-1]:.3f} | {ratios['live'][-1]:.3f}",
            flush=True,
        )
    for name, values in ratios.items():
        print(f"median ratio lab / aiortc alone ({name}): {statistics.median(values):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-lab", action="store_true", help="peers only: no stats, no dashboard")
    parser.add_argument("--no-qoe", action="store_true", help="Lab(qoe=False): no frame tags")
    parser.add_argument("--compare", action="store_true", help="aiortc alone vs the lab")
    parser.add_argument("--rounds", type=int, default=4, help="with --compare")
    args = parser.parse_args()
    if args.compare:
        compare(args.pairs, args.seconds, args.rounds, ("--no-qoe",) if args.no_qoe else ())
    else:
        asyncio.run(measure(args))


if __name__ == "__main__":
    main()
