"""NAT-matrix scenarios on the Linux-namespace backend: both peers are processes
(:mod:`._netns_peer`) in host namespaces of one shared :class:`NetnsNetwork`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
from typing import Any

from .._proc import die_with_parent
from ..net.netns import NetnsHost, NetnsNetwork

__all__ = ["close_shared", "run_netns_scenario"]

_shared: NetnsNetwork | None = None
_scenarios = itertools.count(1)  # host names stay unique in the shared network


def _shared_network() -> NetnsNetwork:
    """One namespace network per process for matrix scenarios (built once, closed at exit)."""
    global _shared
    if _shared is None or _shared.closed:
        _shared = NetnsNetwork().start()
    return _shared


def close_shared() -> None:
    """Remove the matrix's shared namespace network (also done at exit)."""
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


async def run_netns_scenario(
    a: str,
    b: str,
    *,
    turn: bool,
    connect_timeout: float = 3.0,
    settle_seconds: float = 0.3,
    turn_transports: tuple[str, ...] = ("udp",),
    stun: bool = True,
    policy: str = "all",
    firewall: str | None = None,
    mapping_lifetime_s: float | None = None,
    idle_s: float | None = None,
) -> dict[str, Any]:
    """Offerer behind preset ``a`` (and ``firewall``), answerer behind ``b`` -> the
    offerer's row (``connected``, ``connect_ms``, the selected pair's path columns,
    ``rtt_ms``, ``error``); raises if a process fails. ``turn_transports`` are the TURN
    URLs offered (``udp``, ``tcp``, ``tls``), ``policy`` the ICE transport policy. With
    ``idle_s`` both peers stay silent that long once connected (no heartbeats) and then
    exchange a chat line: ``survived`` says whether the other's arrived."""
    net = _shared_network()
    index = next(_scenarios)
    host_a = net.host(f"a{index}", a, firewall=firewall, mapping_lifetime_s=mapping_lifetime_s)
    host_b = net.host(f"b{index}", b, mapping_lifetime_s=mapping_lifetime_s)
    room = f"netns-{index}-{time.monotonic_ns()}"

    def spec(host: NetnsHost, linger: float) -> str:
        return json.dumps({
            "name": host.name, "address": host.address, "room": room,
            "signaling_url": net.signaling_url,
            "ice_servers": net.ice_servers(turn=turn, transports=turn_transports, stun=stun),
            "connect_timeout": connect_timeout, "settle_seconds": settle_seconds,
            "linger": linger, "policy": policy, "tls_ca_file": str(net.ca_file),
            "idle_s": idle_s,
        })  # fmt: skip

    async def start(host: NetnsHost, linger: float) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *host.exec_args(sys.executable, "-m", "rtclab.experiments._netns_peer",
                            spec(host, linger)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),
        )  # fmt: skip

    answerer = await start(host_b, linger=settle_seconds + 2.0)
    offerer: asyncio.subprocess.Process | None = None
    try:
        assert answerer.stdout is not None
        line = await asyncio.wait_for(answerer.stdout.readline(), 30)
        if b"joined" not in line:
            raise RuntimeError(f"the answerer did not join: {line!r}")
        offerer = await start(host_a, linger=0.0)
        budget = connect_timeout + 30 + (idle_s or 0.0)
        out, err = await asyncio.wait_for(offerer.communicate(), budget)
        lines = out.decode().strip().splitlines()
        if not lines:
            raise RuntimeError(f"the offerer reported nothing: {err.decode()[-500:]}")
        row: dict[str, Any] = json.loads(lines[-1])
    finally:
        for process in (answerer, offerer):
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        net.remove_host(host_a)  # a scenario's hosts go with it: addresses are reused
        net.remove_host(host_b)
    return row
