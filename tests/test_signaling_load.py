"""The live server under abuse and under 2,000 clients, run in a subprocess to watch its RSS.

Abusers use a minimal raw WebSocket client (zero mask key, which RFC 6455 permits) so that
the test process can drive thousands of connections cheaply; the well-behaved pair uses
the real ``websockets`` client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import ServerProcess, start_server
from websockets.asyncio.client import connect

pytestmark = pytest.mark.slow

_KEY = base64.b64encode(b"rtclab-load-test").decode()
_MASK = b"\x00\x00\x00\x00"


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame: masked (with a zero key), unfragmented."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _MASK + payload


class Raw:
    """A bare-bones WebSocket client: enough to connect, send, read text and close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, rcvbuf: int | None = None) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if rcvbuf is not None:
            import socket

            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        writer.write(
            f"GET /signal HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    def send(self, obj: Any) -> None:
        self.writer.write(frame(json.dumps(obj).encode()))

    async def recv(self) -> dict[str, Any] | None:
        """Next text message; ``None`` once the server closed."""
        while True:
            try:
                b1, b2 = await self.reader.readexactly(2)
                n = b2 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
                data = await self.reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            opcode = b1 & 0x0F
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self.writer.write(frame(data, 0xA))
            elif opcode == 0x1:
                msg = json.loads(data)
                assert isinstance(msg, dict)
                return msg

    async def join(self, room: str, user: str) -> dict[str, Any] | None:
        self.send({"type": "join", "roomId": room, "userId": user})
        return await self.recv()

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()

    async def close(self) -> None:
        with_close = frame(struct.pack("!H", 1000), 0x8)
        try:
            self.writer.write(with_close)
            await asyncio.wait_for(self.reader.read(), 2)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        self.writer.close()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Resident set (``VmRSS``) or its high-water mark (``VmHWM``) of a process, in KB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


class LoadedServer(ServerProcess):
    @property
    def rss_mb(self) -> float:
        return rss_kb(self.proc.pid) / 1024

    @property
    def peak_rss_mb(self) -> float:
        return rss_kb(self.proc.pid, "VmHWM") / 1024

    async def metrics(self) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data.partition(b"\r\n\r\n")[2].decode()

    async def metric(self, name: str) -> float:
        text = await self.metrics()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("rtclab_signaling_" + name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
async def server_process(request: pytest.FixtureRequest) -> AsyncIterator[LoadedServer]:
    raise_fd_limit(20_000)
    started = await start_server(*getattr(request, "param", ()), stderr=asyncio.subprocess.DEVNULL)
    server = LoadedServer(started.proc, started.url)
    try:
        yield server
    finally:
        await server.stop()


# ----------------------------------------------------------------------------- abuse


async def _good_pair(url: str, stop: asyncio.Event, gaps: list[float]) -> int:
    """Offer/answer ping-pong between two well-behaved clients until ``stop``; returns the
    number of round trips and records every round-trip time in ``gaps``."""
    alice = await connect(url, compression=None)
    bob = await connect(url, compression=None)
    await alice.send(json.dumps({"type": "join", "roomId": "good", "userId": "alice"}))
    await alice.recv()
    await bob.send(json.dumps({"type": "join", "roomId": "good", "userId": "bob"}))
    await bob.recv()
    await alice.recv()  # peer-joined
    n = 0
    while not stop.is_set():
        t = time.perf_counter()
        await alice.send(json.dumps({"type": "offer", "to": "bob", "sdp": {"n": n}}))
        offer = json.loads(await asyncio.wait_for(bob.recv(), 5))
        assert offer["from"] == "alice" and offer["sdp"] == {"n": n}
        await bob.send(json.dumps({"type": "answer", "to": "alice", "sdp": {"n": n}}))
        answer = json.loads(await asyncio.wait_for(alice.recv(), 5))
        assert answer["from"] == "bob" and answer["sdp"] == {"n": n}
        gaps.append(time.perf_counter() - t)
        n += 1
        await asyncio.sleep(0.01)
    await alice.close()
    await bob.close()
    return n


async def _churn(port: int, cycles: int, concurrency: int) -> None:
    """Connect, join, leave by closing (cleanly or abruptly): ``cycles`` times."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            c = await Raw.open(port)
            reply = await c.join(f"churn-{i % 50}", f"u{i}")
            assert reply is not None and reply["type"] == "room-joined"
            if i % 2:
                c.abort()
            else:
                await c.close()

    await asyncio.gather(*(one(i) for i in range(cycles)))


async def _flood(port: int, index: int) -> None:
    """Join beside a partner and send far more than the rate limit allows, reading nothing."""
    a = await Raw.open(port)
    b = await Raw.open(port)
    await a.join(f"flood-{index}", "a")
    await b.join(f"flood-{index}", "b")
    payload = frame(
        json.dumps({"type": "ice-candidate", "to": "b", "candidate": {"c": "x" * 200}}).encode()
    )
    for _ in range(20):
        a.writer.write(payload * 250)  # 5,000 messages in all
        try:
            await asyncio.wait_for(a.writer.drain(), 5)
        except (ConnectionError, asyncio.TimeoutError):
            break
    await asyncio.sleep(0.5)  # let the server read it all before the connection goes
    a.abort()
    b.abort()


async def _oversized(port: int) -> str | None:
    c = await Raw.open(port)
    c.writer.write(frame(b"x" * (2 * 2**20)))
    with_error = await c.recv()
    closed = await c.recv()
    assert closed is None
    c.abort()
    return None if with_error is None else str(with_error.get("code"))


async def _slow_reader(port: int, index: int) -> None:
    """A member that never reads, and a partner sending it big offers until it is dropped."""
    slow = await Raw.open(port, rcvbuf=4096)
    sender = await Raw.open(port)
    await slow.join(f"slow-{index}", "slow")
    await sender.join(f"slow-{index}", "sender")
    big = frame(json.dumps({"type": "offer", "to": "slow", "sdp": {"s": "y" * 30_000}}).encode())
    for _ in range(300):  # 9 MB, while the rate limit's burst allows 1,000 messages
        sender.writer.write(big)
        await sender.writer.drain()
        await asyncio.sleep(0.002)
    while True:  # the sender, which reads, sees its peer dropped
        msg = await asyncio.wait_for(sender.recv(), 20)
        assert msg is not None
        if msg == {"type": "peer-left", "peerId": "slow"}:
            break
        assert msg["type"] == "offer" or msg.get("code") == "unknown-peer", msg
    sender.abort()
    slow.abort()


async def _garbage(port: int) -> None:
    for i in range(50):
        c = await Raw.open(port)
        if i % 2:
            c.writer.write(os.urandom(64))  # not even WebSocket framing
        else:
            c.writer.write(frame(b"\xff\xfe not json") * 5 + frame(b"[]") + frame(b"{}"))
        await asyncio.sleep(0)
        c.abort()


async def test_abuse_run_server_survives_pair_keeps_talking_rss_returns(
    server_process: LoadedServer,
) -> None:
    srv = server_process
    stop = asyncio.Event()
    gaps: list[float] = []
    pair = asyncio.create_task(_good_pair(srv.url, stop, gaps))
    await _churn(srv.port, 300, 50)  # warm up the allocator before the baseline
    await asyncio.sleep(0.5)
    baseline = srv.rss_mb

    results = await asyncio.gather(
        _churn(srv.port, 3000, 64),
        *(_flood(srv.port, i) for i in range(10)),
        *(_oversized(srv.port) for _ in range(20)),
        *(_slow_reader(srv.port, i) for i in range(10)),
        _garbage(srv.port),
    )
    peak = srv.peak_rss_mb
    oversized_codes = results[11:31]
    assert set(oversized_codes) == {"message-too-large"}

    for _ in range(100):  # everything the abusers left is gone
        if await srv.metric("clients") <= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    after = srv.rss_mb
    stop.set()
    round_trips = await pair

    assert srv.proc.returncode is None, "server died"
    assert round_trips > 50 and max(gaps) < 2.0, (round_trips, max(gaps))
    text = await srv.metrics()
    assert await srv.metric("clients") == 0
    assert await srv.metric('messages_refused_total{code="rate-limited"}') > 0
    # each oversized client got its own refusal (above); random garbage frames can add more
    assert await srv.metric('messages_refused_total{code="message-too-large"}') >= 20
    assert await srv.metric('disconnects_total{reason="slow-consumer"}') >= 10, text
    assert await srv.metric("connections_total") >= 3300
    # RSS: back near the baseline (allocator arenas may keep a few MB)
    print(
        f"RSS baseline {baseline:.1f} MB, peak {peak:.1f} MB, after {after:.1f} MB; "
        f"pair round trips {round_trips}, worst {max(gaps) * 1000:.0f} ms"
    )
    assert after < baseline + 10, (baseline, peak, after)


# ----------------------------------------------------------------------------- 2,000 clients


async def test_two_thousand_concurrent_clients(server_process: LoadedServer) -> None:
    n = 2000
    if raise_fd_limit(20_000) < 2 * n + 100:
        pytest.skip("RLIMIT_NOFILE too low for 2,000 clients and their server")
    srv = server_process
    sem = asyncio.Semaphore(100)

    async def open_one() -> Raw:
        async with sem:
            return await Raw.open(srv.port)

    clients = await asyncio.gather(*(open_one() for _ in range(n)))
    # rooms of two: the first of each pair joins, then the second
    firsts = await asyncio.gather(
        *(c.join(f"room-{i // 2}", f"u{i}") for i, c in enumerate(clients) if i % 2 == 0)
    )
    assert all(r is not None and r["peers"] == [] for r in firsts)
    seconds = await asyncio.gather(
        *(c.join(f"room-{i // 2}", f"u{i}") for i, c in enumerate(clients) if i % 2 == 1)
    )
    assert all(r is not None and r["peers"] == [f"u{2 * k}"] for k, r in enumerate(seconds))
    joined = await asyncio.gather(*(clients[i].recv() for i in range(0, n, 2)))
    assert all(m is not None and m["type"] == "peer-joined" for m in joined)
    assert await srv.metric("clients") == n and await srv.metric("rooms") == n // 2

    for i, c in enumerate(clients):  # everyone offers to their partner at once
        partner = i + 1 if i % 2 == 0 else i - 1
        c.send({"type": "offer", "to": f"u{partner}", "sdp": {"i": i}})
    got = await asyncio.wait_for(asyncio.gather(*(c.recv() for c in clients)), 30)
    for i, m in enumerate(got):
        partner = i + 1 if i % 2 == 0 else i - 1
        assert m is not None and m["from"] == f"u{partner}" and m["sdp"] == {"i": partner}
    assert await srv.metric("messages_relayed_total") == n
    print(f"server RSS with {n} clients: {srv.rss_mb:.1f} MB")

    for c in clients:
        c.abort()
    for _ in range(100):
        if await srv.metric("clients") == 0:
            break
        await asyncio.sleep(0.05)
    assert await srv.metric("clients") == 0 and await srv.metric("rooms") == 0
