"""Fast loss detection and automatic recovery, against a real remote process we freeze or kill."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pandas as pd
import pytest

from rtclab.ice.config import IceConfig
from rtclab.peer import Peer
from rtclab.peer.resilience import LivenessTracker, Resilience, is_restarter
from rtclab.signaling.server import SignalingServer
from rtclab.stats import StatsCollector

MakePeer = Callable[..., Awaitable[Peer]]
RTCLAB = str(Path(sys.executable).with_name("rtclab"))


def test_tracker_lost_restart_recovered() -> None:
    policy = Resilience(loss_timeout=3.0, restart_after=2.0)
    t = LivenessTracker(policy, now=0.0, rx_bytes=100)
    assert t.observe(1.0, 200) is None
    assert t.observe(3.9, 200) is None  # 2.9 s of silence
    assert t.observe(4.0, 200) == "lost"
    assert t.observe(5.0, 200) is None
    assert t.observe(6.0, 200) == "restart"
    assert t.observe(9.0, 200) is None  # said once per loss
    assert t.observe(9.5, 300) == "recovered"
    assert t.observe(12.4, 300) is None
    assert t.observe(12.6, 300) == "lost"
    assert is_restarter("alice", "bob") and not is_restarter("bob", "alice")
    assert Resilience(backoff=(1.0, 2.0)).delay(5) == 2.0


async def _start_remote(url: str, name: str, room: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        RTCLAB, "peer", "--signal", url, "--name", name, "--room", room, "--fps", "15",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line and json.loads(line)["event"] == "joined":
            break
    _drains.add(asyncio.ensure_future(_drain(proc)))
    return proc


_drains: set[asyncio.Future[None]] = set()


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass


@pytest.fixture
async def remotes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                with_cont = getattr(signal, "SIGCONT", None)
                if with_cont is not None:
                    os.kill(proc.pid, with_cont)
                proc.kill()
                await proc.wait()


def _events(peer: Peer, remote: str, since: float) -> list[str]:
    return [e.event for e in peer.events if e.remote == remote and e.t >= since]


async def _frames_flow(peer: Peer, remote: str, timeout: float) -> float:
    """Seconds until frames from ``remote`` arrive on a connected link, counting for real."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        conn = peer.connections.get(remote)
        if conn is not None and conn.state == "connected":
            before = conn.counters.frames_received.get("video", 0)
            await asyncio.sleep(0.3)
            if conn.counters.frames_received.get("video", 0) > before:
                return time.monotonic() - start
        else:
            await asyncio.sleep(0.1)
    trail = [(round(e.t % 100, 2), e.event, e.value) for e in peer.events if e.remote == remote]
    raise AssertionError(f"no frames from {remote} within {timeout}s: {peer!r} {trail[-40:]}")


@pytest.mark.slow
async def test_frozen_remote_is_lost_fast_then_recovers_by_itself(
    server: SignalingServer, remotes: list[asyncio.subprocess.Process]
) -> None:
    alice = Peer("alice", server.url, room="r", audio=False, ice=IceConfig(connect_timeout=3.0))
    collector = StatsCollector(interval=0.5)
    collector.add(alice)
    await collector.start()
    await alice.join()
    try:
        remotes.append(bob := await _start_remote(server.url, "bob", "r"))
        await alice.wait_connected(count=1, timeout=20)
        await _frames_flow(alice, "bob", 10)

        frozen = time.time()
        os.kill(bob.pid, signal.SIGSTOP)  # the path is cut both ways; TCP stays open
        while "lost" not in _events(alice, "bob", frozen):
            assert time.time() - frozen < 5.0, "loss not detected within 5 s"
            await asyncio.sleep(0.05)
        detected = time.time() - frozen
        assert alice.connections["bob"].state == "disconnected"
        await asyncio.sleep(max(0.0, 8.0 - detected))  # rebuild attempts fail meanwhile

        resumed = time.time()
        os.kill(bob.pid, signal.SIGCONT)
        took = await _frames_flow(alice, "bob", 10)  # no user action
        events = _events(alice, "bob", frozen)
        order = [events.index(e) for e in ("lost", "recovering", "connected")]
        assert order == sorted(order), events
        assert alice.connections["bob"].attempt > 0
        # stats carry on in the same frame: a gap while lost, video bytes again after
        await asyncio.sleep(1.5)
        samples = collector.samples
        video_in = samples[(samples["kind"] == "video") & (samples["direction"] == "inbound")]
        at = pd.Timestamp(resumed, unit="s", tz="UTC")
        during = video_in[video_in["t"] < at]
        after = video_in[video_in["t"] > at + pd.Timedelta(seconds=took + 0.5)]
        assert (during["bitrate_kbps"].fillna(0) < 1).any()  # the visible gap
        assert (after["bitrate_kbps"] > 20).any(), video_in[["t", "bitrate_kbps"]].tail(12)
        print(
            f"loss detected after {detected:.1f}s, media back {took:.1f}s after resume"
            f" ({time.time() - resumed:.1f}s)"
        )
    finally:
        await collector.stop()
        await alice.close()


@pytest.mark.slow
async def test_killed_remote_that_rejoins_gets_media_again(
    server: SignalingServer, remotes: list[asyncio.subprocess.Process]
) -> None:
    alice = Peer("alice", server.url, room="k", audio=False)
    await alice.join()
    try:
        remotes.append(bob := await _start_remote(server.url, "bob", "k"))
        await alice.wait_connected(count=1, timeout=20)
        killed = time.time()
        bob.kill()
        await bob.wait()
        while "peer-left" not in _events(alice, "bob", killed):
            assert time.time() - killed < 5.0, "loss not detected within 5 s"
            await asyncio.sleep(0.05)
        assert "bob" not in alice.connections
        remotes.append(await _start_remote(server.url, "bob", "k"))
        await _frames_flow(alice, "bob", 15)
    finally:
        await alice.close()


async def test_idle_data_link_is_not_declared_lost(make_peer: MakePeer) -> None:
    """Heartbeats keep a data-only link talking: silence must mean loss, not idleness."""
    fast = Resilience(loss_timeout=1.5)
    alice = await make_peer("alice", video=False, audio=False, resilience=fast)
    bob = await make_peer("bob", video=False, audio=False, resilience=fast)
    await bob.wait_connected(count=1)
    start = time.time()
    await asyncio.sleep(4.0)
    assert "lost" not in _events(alice, "bob", start) + _events(bob, "alice", start)
    assert alice.connections["bob"].state == "connected"
    # heartbeats are link upkeep, not chat or cursor messages
    assert alice.connections["bob"].counters.channel("cursors").messages_received == 0


async def test_a_peer_whose_signaling_drops_joins_again_and_rebuilds_its_links(
    make_peer: MakePeer,
) -> None:
    """A NAT reboot or a server restart cuts a joined peer's WebSocket: it joins the room
    again (with backoff while the server still seats the old connection) and rebuilds its
    connections; both sides report them ``recovered`` and video flows again."""
    alice = await make_peer("alice", audio=False, fps=15)
    bob = await make_peer("bob", audio=False, fps=15)
    await bob.wait_connected(count=1, timeout=20)
    await alice.wait_connected(count=1, timeout=20)
    cut = time.time()
    assert bob._client is not None
    bob._client._ws.transport.abort()  # the TCP connection is gone, as after a NAT reboot
    deadline = time.monotonic() + 15
    while not (
        "recovered" in _events(alice, "bob", cut) and "recovered" in _events(bob, "alice", cut)
    ):
        assert time.monotonic() < deadline, [(e.event, e.value) for e in bob.events][-15:]
        await asyncio.sleep(0.1)
    mine = [e.event for e in bob.events if e.t >= cut and e.remote is None]
    assert mine[0] == "signaling-closed" and "signaling-reconnected" in mine, mine
    # refused (duplicate-user) only while the server had not yet seen the old one go
    assert set(mine[1 : mine.index("signaling-reconnected")]) <= {"signaling-retry"}, mine
    assert bob.state == "joined" and bob._client is not None and not bob._client.closed
    assert "peer-left" in _events(alice, "bob", cut)  # the server saw the old one go
    await _frames_flow(alice, "bob", 10)
    await _frames_flow(bob, "alice", 10)
    # and an intentional leave is not undone
    await bob.leave()
    await asyncio.sleep(1.0)
    assert bob.state == "left"
    assert [e.event for e in bob.events].count("signaling-reconnected") == 1
