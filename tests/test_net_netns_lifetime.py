"""A namespace router's mapping lifetime is real: conntrack forgets an idle UDP mapping after
``mapping_lifetime_s``, and a reply that comes later is dropped (root only)."""

from __future__ import annotations

import asyncio
import json
import sys

from helpers import needs_root

from rtclab.net.netns import NetnsNetwork
from rtclab.net.netns.network import STUN_IP

PORT, LATE_S = 40000, 4.0

LISTENER = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({STUN_IP!r}, int(sys.argv[1])))
print("ready", flush=True)
data, addr = s.recvfrom(100)
s.sendto(b"early", addr)
time.sleep({LATE_S})
s.sendto(b"late", addr)
"""

SENDER = f"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout({LATE_S} + 2)
s.sendto(b"hi", ({STUN_IP!r}, int(sys.argv[1])))
got = []
try:
    while len(got) < 2:
        got.append(s.recv(100).decode())
except TimeoutError:
    pass
print(json.dumps(got))
"""


async def _replies(net: NetnsNetwork, lifetime: float | None, port: int) -> list[str]:
    host = net.host(f"h{port}", "port-restricted-cone", mapping_lifetime_s=lifetime)
    pipe = asyncio.subprocess.PIPE
    listener = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", net.public, sys.executable, "-c", LISTENER, str(port), stdout=pipe
    )
    try:
        assert listener.stdout is not None
        assert b"ready" in await asyncio.wait_for(listener.stdout.readline(), 20)
        sender = await asyncio.create_subprocess_exec(
            *host.exec_args(sys.executable, "-c", SENDER, str(port)), stdout=pipe
        )
        out, _ = await asyncio.wait_for(sender.communicate(), 30)
        got: list[str] = json.loads(out.decode().strip().splitlines()[-1])
        return got
    finally:
        if listener.returncode is None:
            listener.kill()
        await listener.wait()


@needs_root
async def test_conntrack_forgets_a_mapping_after_its_lifetime() -> None:
    with NetnsNetwork() as net:
        short, default = await asyncio.gather(
            _replies(net, 2.0, PORT), _replies(net, None, PORT + 1)
        )
    assert short == ["early"]  # the late reply found no mapping: dropped at the router
    assert default == ["early", "late"]


@needs_root
async def test_idle_call_on_kernel_nat_breaks_with_a_short_lifetime_only() -> None:
    """Symmetric kernel NAT (``random-fully``): a 2 s conntrack timeout loses the relay's
    mappings between two consent checks and the idle call is dead; 30 s keeps it."""
    from rtclab.experiments.binding_timeouts import binding_timeouts

    result = await binding_timeouts([2, 30], ["symmetric"], reboot=False, idle_s=10.0,
                                    backend="netns", progress=False)  # fmt: skip
    frame = result.frame.set_index("lifetime_s")
    assert frame["path"].tolist() == ["relay", "relay"], frame.to_dict("records")
    assert frame["survived"].to_dict() == {2.0: False, 30.0: True}, frame.to_dict("records")
