"""Scale-out: two server processes sharing rooms through a real ``redis-server`` on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from helpers import ServerProcess, start_server, ws_join, ws_recv, ws_send
from websockets.asyncio.client import connect

from rtclab.signaling import SignalingServer

TIMEOUT = 5.0
pytestmark = pytest.mark.slow  # a real redis-server and two server processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, no persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed (Debian package redis-server; scripts/setup.sh)")
    pytest.importorskip("redis")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("redis-server exited at start")
                import time

                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
async def two_servers(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[list[str]]:
    prefix = f"test:{request.node.name}"  # a namespace per test: no state shared between tests
    servers: list[ServerProcess] = []
    try:
        for _ in range(2):
            servers.append(
                await start_server(
                    "--redis", redis_url, "--redis-prefix", prefix, "--max-room-size", "3"
                )
            )
        yield [server.url for server in servers]
    finally:
        for server in servers:
            server.proc.terminate()
        for server in servers:
            await server.stop()


async def test_clients_on_two_processes_share_a_room(two_servers: list[str]) -> None:
    url1, url2 = two_servers
    alice = await connect(url1)
    bob = await connect(url2)
    assert await ws_join(alice, "r", "alice") == {"type": "room-joined", "roomId": "r", "peers": []}
    assert await ws_join(bob, "r", "bob") == {
        "type": "room-joined",
        "roomId": "r",
        "peers": ["alice"],
    }
    assert await ws_recv(alice) == {"type": "peer-joined", "peerId": "bob"}

    # offer / answer / trickled candidates, in order, with a server-set from
    await ws_send(
        alice,
        {
            "type": "offer",
            "to": "bob",
            "from": "mallory",
            "sdp": {"type": "offer", "sdp": "v=0\r\n"},
        },
    )
    for i in range(20):
        await ws_send(alice, {"type": "ice-candidate", "to": "bob", "candidate": {"i": i}})
    await ws_send(alice, {"type": "ice-candidate", "to": "bob", "candidate": None})
    offer = await ws_recv(bob)
    assert offer == {
        "type": "offer",
        "to": "bob",
        "sdp": {"type": "offer", "sdp": "v=0\r\n"},
        "from": "alice",
    }
    got = [await ws_recv(bob) for _ in range(21)]
    assert [m["candidate"] for m in got] == [{"i": i} for i in range(20)] + [None]
    assert {m["from"] for m in got} == {"alice"}
    await ws_send(bob, {"type": "answer", "to": "alice", "sdp": {"type": "answer"}})
    assert (await ws_recv(alice))["from"] == "bob"

    # a third member on process 1 sees both; the room is full at 3 across processes
    carol = await connect(url1)
    assert (await ws_join(carol, "r", "carol"))["peers"] == ["alice", "bob"]
    assert await ws_recv(alice) == {"type": "peer-joined", "peerId": "carol"}
    assert await ws_recv(bob) == {"type": "peer-joined", "peerId": "carol"}
    dave = await connect(url2)
    assert (await ws_join(dave, "r", "dave"))["code"] == "room-full"

    # duplicate userId refused across processes
    assert (await ws_join(dave, "r2", "x"))["type"] == "room-joined"
    impostor = await connect(url1)
    assert (await ws_join(impostor, "r2", "x"))["code"] == "duplicate-user"

    # relay only within the room: dave (r2, process 2) cannot reach alice
    await ws_send(dave, {"type": "offer", "to": "alice", "sdp": {}})
    assert (await ws_recv(dave))["code"] == "unknown-peer"

    # leave and abrupt close are seen on the other process
    await ws_send(bob, {"type": "leave"})
    assert await ws_recv(alice) == {"type": "peer-left", "peerId": "bob"}
    assert await ws_recv(carol) == {"type": "peer-left", "peerId": "bob"}
    await carol.close()
    assert await ws_recv(alice) == {"type": "peer-left", "peerId": "carol"}
    # bob may come back under the same name, on the other process this time
    bob2 = await connect(url1)
    assert (await ws_join(bob2, "r", "bob"))["peers"] == ["alice"]
    assert await ws_recv(alice) == {"type": "peer-joined", "peerId": "bob"}
    for ws in (alice, bob, dave, impostor, bob2):
        await ws.close()


async def test_a_process_that_stops_takes_its_members_along(
    redis_url: str, two_servers: list[str]
) -> None:
    url1, url2 = two_servers
    alice = await connect(url1)
    await ws_join(alice, "r", "alice")
    # an in-process third node: its stop() is graceful, its members leave the registry
    node = SignalingServer(
        redis_url=redis_url,
        redis_prefix="test:" + "test_a_process_that_stops_takes_its_members_along",
    )
    await node.start()
    try:
        bob = await connect(node.url)
        assert (await ws_join(bob, "r", "bob"))["peers"] == ["alice"]
        assert await ws_recv(alice) == {"type": "peer-joined", "peerId": "bob"}
        assert node.rooms() == {"r": ["alice", "bob"]}  # the replica shows every process
    finally:
        await node.stop()
    assert (await ws_recv(bob))["code"] == "server-shutdown"
    assert await ws_recv(alice) == {"type": "peer-left", "peerId": "bob"}
    late = await connect(url2)
    assert (await ws_join(late, "r", "bob"))["peers"] == ["alice"]  # the name is free again
    await alice.close()
    await late.close()


async def test_missing_redis_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    srv = SignalingServer(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(RuntimeError, match=r"pip install 'rtclab\[redis\]'"):
        await srv.start()
    assert not srv.running


async def test_unreachable_redis_is_a_clear_error() -> None:
    pytest.importorskip("redis")
    srv = SignalingServer(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RuntimeError, match="cannot reach Redis"):
        await srv.start()
    assert not srv.running
