"""Relay connect time on loopback: createOffer -> connected over TURN (prints figures; not a test).

    .venv/bin/python bench/turn_connect.py [--runs 20] [--transports udp,tcp,tls]

Two aiortc RTCPeerConnections with ``iceTransportPolicy=relay`` exchange complete SDP directly
(no signaling server in the way) through a real coturn started on loopback by rtclab. Timed
from ``createOffer()`` until both are ``connected``. Each transport runs with rtclab's TURN
fixes on (the default: permissions created before the first check, ChannelData that
overtakes aioice's ChannelBind bookkeeping kept; see rtclab/ice/gathering.py) and off
(``IceConfig(turn_prepermit=False)``: plain aiortc + aioice behaviour).
Target (issue #4): TURN/UDP median < 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aioice
import aiortc
from aiortc import RTCPeerConnection

from rtclab.ice.config import IceConfig
from rtclab.ice.coturn import Coturn, TurnTransport
from rtclab.ice.gathering import GatheringLog, gathering_on
from rtclab.ice.inspect import selected_candidate_pair


async def one_run(ice: IceConfig) -> float:
    a = RTCPeerConnection(ice.rtc_configuration())
    b = RTCPeerConnection(ice.rtc_configuration())
    a.createDataChannel("bench")
    try:
        t0 = time.perf_counter()
        log_a, log_b = GatheringLog(), GatheringLog()
        with gathering_on(ice.interfaces, config=ice, log=log_a):
            await a.setLocalDescription(await a.createOffer())
        with gathering_on(ice.interfaces, config=ice, log=log_b):
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
        with gathering_on(ice.interfaces, config=ice, log=log_a):
            await a.setRemoteDescription(b.localDescription)
        while not (a.connectionState == b.connectionState == "connected"):
            if "failed" in (a.connectionState, b.connectionState):
                why = [f.message for f in log_a.failures + log_b.failures]
                raise ConnectionError(f"ICE failed {why or ''}")
            if time.perf_counter() - t0 > 10:
                raise TimeoutError("not connected within 10 s")
            await asyncio.sleep(0.001)
        took = (time.perf_counter() - t0) * 1000
        pair = selected_candidate_pair(a)
        assert pair is not None and pair.local.type == "relay", pair
        return took
    finally:
        await asyncio.gather(a.close(), b.close())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--transports", default="udp,tcp,tls")
    args = parser.parse_args()
    transports: list[TurnTransport] = [t for t in args.transports.split(",") if t]  # type: ignore[misc]
    async with Coturn(verbose=False) as turn:
        print(
            f"aiortc {aiortc.__version__}, aioice {aioice.__version__}, coturn on loopback "
            f"(ready in {turn.started_ms:.0f} ms), {args.runs} runs each, relay-only pair"
        )
        print(f"{'TURN':5} {'rtclab fixes':15} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}")
        for transport in transports:
            for prepermit in (True, False):
                ice = turn.ice_config([transport]).replace(turn_prepermit=prepermit)
                await one_run(ice)  # warm-up: imports, first TLS context
                times: list[float] = []
                failures: list[str] = []
                for _ in range(args.runs):
                    try:
                        times.append(await one_run(ice))
                    except (ConnectionError, TimeoutError) as exc:
                        failures.append(str(exc))
                times.sort()
                p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
                print(
                    f"{transport:5} {'on' if prepermit else 'off (aiortc)':15} "
                    f"{statistics.median(times):7.1f}ms {p90:7.1f}ms "
                    f"{times[0]:7.1f}ms {times[-1]:7.1f}ms"
                    + (f"  {len(failures)} failed: {failures[0]}" if failures else "")
                )


if __name__ == "__main__":
    asyncio.run(main())
