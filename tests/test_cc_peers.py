"""Estimators on real aiortc peers: what the receiver estimates is what the sender sends."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import pandas as pd
import pytest
from helpers import until

from rtclab._compat.aiortc import sender_encoder
from rtclab.cc import LossBasedAimd, ReceivedPacket, RembFeedback
from rtclab.net import Link, Network
from rtclab.peer import Peer
from rtclab.signaling.server import SignalingServer
from rtclab.stats import StatsCollector

MakePeer = Callable[..., Awaitable[Peer]]
pytestmark = pytest.mark.slow


class Fixed:
    """An estimator a student could write in a cell: always the same answer."""

    def __init__(self, bps: int) -> None:
        self.bps = bps

    def on_packet(self, packet: ReceivedPacket) -> None:
        pass

    def estimate(self, now_ms: int) -> int | None:
        return self.bps


def _sent_kbps(collector: StatsCollector, peer: str, since: float) -> list[float]:
    s = collector.samples
    rows = s[(s["peer"] == peer) & (s["kind"] == "video") & (s["direction"] == "outbound")]
    return [round(float(b)) for b in rows[rows["elapsed_s"] >= since]["bitrate_kbps"].dropna()]


async def _send_under(
    make_peer: MakePeer, bps: int, room: str
) -> tuple[list[float], RembFeedback | None, pd.DataFrame]:
    """alice sends 640x480@30 to bob, whose estimator always says ``bps``: alice's rates,
    bob's estimation and his estimates frame."""
    video = {"audio": False, "data": False, "width": 640, "height": 480, "fps": 30, "room": room}
    bob = await make_peer("bob", video=False, estimator=lambda: Fixed(bps), **video)
    alice = await make_peer("alice", **video)
    await alice.wait_connected(count=1)
    collector = StatsCollector(interval=0.5)
    collector.add(alice)
    await collector.start()
    try:
        sender = alice.connections["bob"]._senders["video"]
        encoder = await until(lambda: sender_encoder(sender), what="alice's encoder")
        # bob's REMB sets alice's encoder target, within aiortc's clamp (250 kbps-1.5 Mbps)
        await until(lambda: encoder.target_bitrate == max(250_000, bps), what="the REMB")
        await asyncio.sleep(6.0)
        estimation = bob.connections["alice"].estimation
        return _sent_kbps(collector, "alice", since=2.5), estimation, bob.estimates()
    finally:
        await collector.stop()
        await asyncio.gather(alice.close(), bob.close())


async def test_a_custom_estimator_sets_what_the_sender_sends(make_peer: MakePeer) -> None:
    """VP8 here sends ~1.2 Mbps for 640x480@30 when allowed 1.5 and ~250 kbps when allowed
    250: aiortc clamps a REMB to at least 250 kbps, so a lower estimate cannot go lower."""
    low, _, frame = await _send_under(make_peer, 250_000, "cc-low")
    high, estimation, _ = await _send_under(make_peer, 1_500_000, "cc-high")
    low_kbps, high_kbps = statistics.median(low), statistics.median(high)
    assert len(low) >= 6 and len(high) >= 6
    assert 250 * 0.7 <= low_kbps <= 250 * 1.3, f"low={low} high={high}"
    assert high_kbps > 2.5 * low_kbps, f"low={low} high={high}"

    # what the estimators said is observable: the connection, the frame, the events
    assert estimation is not None and estimation.estimate_bps == 1_500_000
    assert estimation.name == "Fixed" and isinstance(estimation.estimator, Fixed)
    assert len(frame) >= 20 and set(frame["estimate_kbps"]) == {250.0}  # every 200 ms
    assert set(frame["remote"]) == {"alice"} and str(frame["t"].dt.tz) == "UTC"


async def _pair(
    net: Network, server: SignalingServer, tag: str, link: Link | None
) -> tuple[Peer, Peer]:
    """``a-<tag>`` (behind ``link``) sends video to ``b-<tag>``, who runs LossBasedAimd."""
    assert server.url is not None
    opts: dict[str, Any] = {"room": tag, "audio": False, "data": False}
    opts["ice"] = net.ice_config(stun=False, connect_timeout=5.0)
    sender = Peer(f"a-{tag}", server.url, network=net.host(f"a-{tag}", "open", link=link), **opts)
    receiver = Peer(
        f"b-{tag}", server.url, network=net.host(f"b-{tag}", "open"), video=False,
        estimator=LossBasedAimd, **opts,
    )  # fmt: skip
    await receiver.join()
    await sender.join()
    await sender.wait_connected(count=1)
    return sender, receiver


async def test_loss_based_aimd_backs_off_on_a_lossy_link() -> None:
    """10 % loss on the sender's link: the estimate falls below where it started (300 kbps)
    and far below the estimate on a clean link, which rose."""
    with Network(seed=3) as net:
        async with SignalingServer(port=0) as server:
            pairs = [
                await _pair(net, server, "clean", None),
                await _pair(net, server, "lossy", Link(loss=0.1)),
            ]
            try:
                await asyncio.sleep(6.0)
                clean, lossy = (b.connections[a.name].estimation for a, b in pairs)
                assert clean is not None and lossy is not None
                said = f"clean={list(clean.history)} lossy={list(lossy.history)}"
                assert clean.estimate_bps is not None and clean.estimate_bps > 300_000, said
                assert lossy.estimate_bps is not None and lossy.estimate_bps < 250_000, said
                assert lossy.estimate_bps < 0.6 * clean.estimate_bps, said
                assert isinstance(lossy.estimator, LossBasedAimd)
                assert lossy.estimator.last_loss is not None and clean.estimator.last_loss == 0.0
            finally:
                await asyncio.gather(*(p.close() for pair in pairs for p in pair))


class Broken:
    def on_packet(self, packet: ReceivedPacket) -> None:
        raise ZeroDivisionError("student bug")

    def estimate(self, now_ms: int) -> int | None:
        return None


async def test_a_broken_estimator_is_reported_and_video_still_arrives(
    make_peer: MakePeer,
) -> None:
    bob = await make_peer("bob", audio=False, data=False, video=False, estimator=Broken)
    alice = await make_peer("alice", audio=False, data=False)
    await bob.wait_connected(count=1)
    conn = bob.connections["alice"]
    await until(lambda: conn.counters.frames_received.get("video", 0) >= 10, what="10 frames")
    assert ("alice", "estimator", "Broken") in [(e.remote, e.event, e.value) for e in bob.events]
    errors = [e.value for e in bob.events if e.event == "error"]
    assert len(errors) == 1 and "Broken failed" in errors[0] and "student bug" in errors[0]
    assert conn.estimation is not None and conn.estimation.estimate_bps is None
    assert alice.connections
