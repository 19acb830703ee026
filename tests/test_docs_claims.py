"""What README.md and the notebooks' prose claim, checked against what the code does."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import aioice
import aioice.stun
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rtclab import Lab
from rtclab.ice.gathering import gathering_on
from rtclab.net import Network
from rtclab.signaling.server import SignalingServer

ROOT = Path(__file__).parent.parent


def _section(markdown: str, title: str) -> str:
    """The text under ``## title`` up to the next ``## `` heading, on one line."""
    body = markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(body.split())


def _notebook_prose(name: str) -> str:
    cells = json.loads((ROOT / "notebooks" / name).read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return " ".join(text.split())


async def _error_then_close(ws: ClientConnection) -> tuple[str, int | None]:
    """The refusal's ``code``, then the close code that follows it."""
    code = json.loads(await ws.recv())["code"]
    try:
        await ws.recv()
    except ConnectionClosed:
        pass
    return code, ws.close_code


async def test_readme_says_which_refusals_close_the_connection() -> None:
    text = _section((ROOT / "README.md").read_text(), "Signaling protocol")
    assert "the connection stays usable" in text
    claimed = dict(re.findall(r"`([a-z-]+)` and (?:then close code )?(\d{4})", text))
    assert claimed == {"message-too-large": "1009", "unauthorized": "1008", "server-full": "1013"}
    assert "64 KiB" in text

    async with SignalingServer(port=0, rate=None) as srv:
        async with connect(srv.url) as ws, connect(srv.url) as other:
            await other.send(json.dumps({"type": "join", "roomId": "r", "userId": "carl"}))
            await other.recv()
            bad = [
                "{not json",
                json.dumps({"type": "bogus"}),
                json.dumps({"type": "offer", "to": "carl", "sdp": {}}),
                json.dumps({"type": "join", "roomId": "r", "userId": "carl"}),
            ]
            codes = []
            for frame in bad:
                await ws.send(frame)
                codes.append(json.loads(await ws.recv())["code"])
            assert codes == ["invalid-json", "unknown-type", "not-joined", "duplicate-user"]
            await ws.send(json.dumps({"type": "join", "roomId": "r", "userId": "dora"}))
            assert json.loads(await ws.recv())["type"] == "room-joined"  # still usable
            await ws.send("x" * (64 * 1024 + 1))
            assert await _error_then_close(ws) == ("message-too-large", 1009)
    async with SignalingServer(port=0, token="t0ken", max_clients=1) as srv:
        async with connect(srv.url) as ws:
            await ws.send(json.dumps({"type": "join", "roomId": "r", "userId": "u", "token": "x"}))
            assert await _error_then_close(ws) == ("unauthorized", 1008)
        async with connect(srv.url + "?token=t0ken") as first, connect(srv.url) as second:
            assert await _error_then_close(second) == ("server-full", 1013)
            assert first.close_code is None


@pytest.mark.slow
async def test_relay_related_address_is_the_mapped_address_as_notebook_05_says() -> None:
    prose = _notebook_prose("05-turn-and-ice-paths.ipynb")
    assert "related address is the **server-reflexive (mapped) address**" in prose
    assert "reveal the host address" not in prose

    async with Lab(name="related-address") as lab:
        with Network(seed=1) as net:
            for policy in ("all", "relay"):
                ice = net.ice_config(turn=True, connect_timeout=5.0, ice_transport_policy=policy)
                for name in ("a", "b"):
                    host = net.host(f"{name}-{policy}", "full-cone")
                    await lab.peer(f"{name}-{policy}", room=policy, ice=ice, network=host,
                                   video=False, audio=False)  # fmt: skip
            await lab.wait_connected(timeout=10)
            cands = lab.candidates
    mine = cands[(cands["peer"] == "a-all") & (cands["side"] == "local")].set_index("type")
    host, srflx, relay = (mine.loc[t] for t in ("host", "srflx", "relay"))
    assert relay["related_address"] == srflx["address"]  # the NAT's public address
    assert relay["related_address"] != host["address"]
    hidden = cands[(cands["peer"] == "a-relay") & (cands["side"] == "local")]
    assert list(hidden["type"]) == ["relay"]
    assert (hidden["related_address"].iloc[0], hidden["related_port"].iloc[0]) == ("0.0.0.0", 9)


async def _delayed_path(
    target: tuple[str, int], delay: float
) -> tuple[int, list[bytes], Callable[[], None]]:
    """A UDP path to ``target`` that works but adds ``delay`` each way: a port to send to,
    the datagrams that went in, and a close function."""
    loop = asyncio.get_running_loop()
    seen: list[bytes] = []
    sender: list[tuple[str, int]] = []

    class Front(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            sender[:] = [addr]
            seen.append(data)
            loop.call_later(delay, back.sendto, data, target)

    class Back(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if sender:
                loop.call_later(delay, front.sendto, data, sender[0])

    front, _ = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
    back, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.1", 0))

    def close() -> None:
        front.close()
        back.close()

    return front.get_extra_info("sockname")[1], seen, close


async def test_aioice_nominates_the_first_pair_that_succeeds_as_notebook_06_says() -> None:
    """A preferred pair that works, only slower, loses to a worse pair that answers first."""
    prose = _notebook_prose("06-nat-traversal.ipynb")
    assert "ICE still prefers a direct path" not in prose
    assert "the *first* pair whose check succeeds is nominated" in prose
    assert "only after 500 ms (`aioice.stun.RETRY_RTO`)" in prose and aioice.stun.RETRY_RTO == 0.5

    with gathering_on(["127.0.0.1"]):
        controlling = aioice.Connection(ice_controlling=True, components=1)
        controlled = aioice.Connection(ice_controlling=False, components=1)
        await controlling.gather_candidates()
        await controlled.gather_candidates()
    (direct,) = controlled.local_candidates
    port, seen, close = await _delayed_path((direct.host, direct.port), delay=0.3)
    preferred = aioice.Candidate(
        foundation="slow", component=1, transport="udp", priority=direct.priority + 1000,
        host="127.0.0.1", port=port, type="host",
    )  # fmt: skip
    controlling.remote_username = controlled.local_username
    controlling.remote_password = controlled.local_password
    controlled.remote_username = controlling.local_username
    controlled.remote_password = controlling.local_password
    for candidate in (preferred, direct, None):
        await controlling.add_remote_candidate(candidate)
    for candidate in (*controlling.local_candidates, None):
        await controlled.add_remote_candidate(candidate)
    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(controlling.connect(), controlled.connect()), 10)
        took = time.monotonic() - started
        await controlling.send(b"which-path")
        assert await asyncio.wait_for(controlled.recv(), 5) == b"which-path"
        await asyncio.sleep(0.7)  # anything sent on the slow path has come out by now
    finally:
        close()
        await controlling.close()
        await controlled.close()
    assert took < 0.3, took  # completed before the preferred pair could even answer
    first_check = aioice.stun.parse_message(seen[0])
    assert "USE-CANDIDATE" in first_check.attributes  # aggressive: nominated in the check
    assert not any(b"which-path" in data for data in seen)  # data went the worse, direct way
