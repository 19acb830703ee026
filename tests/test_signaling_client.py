"""SignalingClient against the real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from rtclab.signaling import SignalingClient, SignalingError, SignalingServer


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with SignalingServer() as srv:
        yield srv


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_join_offer_answer_candidates(server: SignalingServer) -> None:
    alice = await SignalingClient.connect(server.url)
    bob = await SignalingClient.connect(server.url)
    assert await alice.join("room", "alice") == []
    assert await bob.join("room", "bob") == ["alice"]
    assert (alice.user_id, alice.room_id) == ("alice", "room")
    assert await alice.recv(timeout=2) == {"type": "peer-joined", "peerId": "bob"}

    await alice.offer("bob", {"type": "offer", "sdp": "v=0\r\n"})
    msg = await bob.recv(timeout=2)
    assert msg == {
        "type": "offer",
        "to": "bob",
        "sdp": {"type": "offer", "sdp": "v=0\r\n"},
        "from": "alice",
    }
    await bob.answer("alice", {"type": "answer", "sdp": "v=0\r\n"})
    assert (await alice.recv(timeout=2))["type"] == "answer"
    cand = {
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    await bob.ice_candidate("alice", cand)
    await bob.ice_candidate("alice", None)
    assert (await alice.recv(timeout=2))["candidate"] == cand
    assert (await alice.recv(timeout=2))["candidate"] is None
    await alice.close()
    await bob.close()


async def test_join_errors_raise(server: SignalingServer) -> None:
    first = await SignalingClient.connect(server.url)
    await first.join("r", "alice")
    second = await SignalingClient.connect(server.url)
    with pytest.raises(SignalingError) as info:
        await second.join("r", "alice")
    assert info.value.code == "duplicate-user" and "alice" in info.value.message
    assert second.user_id is None and second.room_id is None
    with pytest.raises(SignalingError) as info:
        await first.join("r2", "x")
    assert info.value.code == "already-joined"
    with pytest.raises(SignalingError) as info:
        await second.join("", "x")
    assert info.value.code == "invalid-message"
    await first.close()
    await second.close()


async def test_unknown_peer_error_arrives_as_message(server: SignalingServer) -> None:
    alice = await SignalingClient.connect(server.url)
    await alice.join("r", "alice")
    await alice.offer("nobody", {"type": "offer", "sdp": ""})
    msg = await alice.recv(timeout=2)
    assert (msg["type"], msg["code"]) == ("error", "unknown-peer")
    await alice.close()


async def test_recv_timeout(server: SignalingServer) -> None:
    alice = await SignalingClient.connect(server.url)
    with pytest.raises(TimeoutError):
        await alice.recv(timeout=0.05)
    await alice.close()


async def test_leave_rejoin_and_messages_seen_during_join_are_kept(
    server: SignalingServer,
) -> None:
    alice = await SignalingClient.connect(server.url)
    bob = await SignalingClient.connect(server.url)
    await alice.join("r1", "alice")
    await bob.join("r1", "bob")
    await asyncio.sleep(0.05)  # alice's peer-joined is now queued, unread
    await alice.leave()
    assert alice.room_id is None
    assert await bob.recv(timeout=2) == {"type": "peer-left", "peerId": "alice"}
    assert await alice.join("r2", "alice") == []
    assert await alice.recv(timeout=2) == {"type": "peer-joined", "peerId": "bob"}
    await alice.leave()
    await alice.leave()  # no-op when not in a room
    await alice.close()
    await bob.close()


async def test_iteration_stops_when_server_stops() -> None:
    srv = SignalingServer()
    url = await srv.start()
    alice = await SignalingClient.connect(url)
    bob = await SignalingClient.connect(url)
    await alice.join("r", "alice")
    await bob.join("r", "bob")
    received: list[str] = []

    async def consume() -> None:
        async for msg in alice:
            received.append(msg.get("code", msg["type"]))
            if msg["type"] == "offer":
                await srv.stop()

    await bob.offer("alice", {"type": "offer", "sdp": ""})
    await asyncio.wait_for(consume(), 5)
    assert received == ["peer-joined", "offer", "server-shutdown"]  # told, then closed
    assert alice.closed
    with pytest.raises(SignalingError) as info:
        await alice.recv(timeout=1)
    assert info.value.code == "closed"
    with pytest.raises(SignalingError) as info:
        await alice.send({"type": "leave"})
    assert info.value.code == "closed"
    await alice.close()
    await bob.close()


async def test_close_leaves_no_tasks(server: SignalingServer) -> None:
    before = other_tasks()
    clients = [await SignalingClient.connect(server.url) for _ in range(3)]
    await clients[0].join("r", "a")
    for c in clients:
        await c.close()
        assert c.closed
    await clients[0].close()  # idempotent
    await asyncio.sleep(0)
    assert other_tasks() - before == set()


async def test_context_manager_and_peer_left_on_close(server: SignalingServer) -> None:
    alice = await SignalingClient.connect(server.url)
    await alice.join("r", "alice")
    async with await SignalingClient.connect(server.url) as bob:
        await bob.join("r", "bob")
        assert (await alice.recv(timeout=2))["type"] == "peer-joined"
    assert bob.closed
    assert await alice.recv(timeout=2) == {"type": "peer-left", "peerId": "bob"}
    await alice.close()


async def test_connect_failures() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(SignalingError) as info:
            await SignalingClient.connect(f"ws://127.0.0.1:{port}/signal", timeout=2)
    assert info.value.code == "connect-failed"
    async with SignalingServer() as srv:
        with pytest.raises(SignalingError) as info:
            await SignalingClient.connect(f"ws://127.0.0.1:{srv.port}/nope", timeout=2)
        assert info.value.code == "connect-failed" and "404" in info.value.message
