"""How long the TURN doctor takes on loopback (prints figures; not a test).

    .venv/bin/python bench/turn_check.py [--runs 10]

A real coturn started by rtclab on loopback. Timed: ``rtclab turn-check`` as a user runs it
(a new process: Python start, imports, every step of the STUN, TURN/UDP, TURN/TCP and
TURN/TLS URLs at once, the table printed), the same check in-process (``await doctor(...)``,
the notebook case), and two failures that must be named within their own step timeout:
nothing listening (refused at once) and a UDP port that swallows every packet (named when
the 5 s default step timeout ends). Budget (issue #16): a healthy check < 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rtclab.ice import doctor
from rtclab.ice.coturn import Coturn, free_port

EXE = str(Path(sys.executable).with_name("rtclab"))


def line(name: str, values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return (
        f"{name:<34} median {statistics.median(values):8.1f} ms   p90 {p90:8.1f} ms   "
        f"max {values[-1]:8.1f} ms"
    )


async def cli_once(args: list[str]) -> tuple[float, int]:
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        EXE, "turn-check", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    code = await proc.wait()
    return (time.perf_counter() - began) * 1000, code


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    async with Coturn() as turn:
        urls = [turn.stun_url, *turn.urls()]
        creds = turn.credentials("bench")
        with tempfile.TemporaryDirectory() as tmp:
            secret = Path(tmp) / "secret"
            secret.write_text(turn.secret.reveal() + "\n")
            args = [*urls, "--secret-file", str(secret), "--user", "bench"]
            args += ["--cafile", str(turn.ca_file)]
            cli: list[float] = []
            for _ in range(runs):
                took, code = await cli_once(args)
                assert code == 0, "the healthy check failed"
                cli.append(took)
        inproc: list[float] = []
        for _ in range(runs):
            began = time.perf_counter()
            report = await doctor(
                urls, username=creds.username, credential=creds.credential, cafile=turn.ca_file
            )
            inproc.append((time.perf_counter() - began) * 1000)
            assert report.ok, report.table()
        relay = report.frame.query("step == 'relay'")
    down: list[float] = []
    for _ in range(runs):
        began = time.perf_counter()
        report = await doctor(f"turn:127.0.0.1:{free_port()}", username="u", credential="p")
        down.append((time.perf_counter() - began) * 1000)
        assert not report.ok
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    began = time.perf_counter()
    report = await doctor(f"turn:127.0.0.1:{silent.getsockname()[1]}", username="u", credential="p")
    swallowed = (time.perf_counter() - began) * 1000
    silent.close()
    print(f"{runs} runs, 4 URLs (stun, turn udp, turn tcp, turns) per healthy check")
    print(line("CLI turn-check, healthy (process)", cli))
    print(line("doctor() in-process, healthy", inproc))
    print(line("doctor(), server down (refused)", down))
    print(
        line("doctor(), UDP swallowed (5 s step)", [swallowed]),
        f"-> {report.cause(report.urls[0])}",
    )
    for _, row in relay.iterrows():
        print(f"  last relay echo {row['transport']}: {row['ms']:.1f} ms step, {row['detail']}")


if __name__ == "__main__":
    asyncio.run(main())
