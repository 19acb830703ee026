"""Every server rule against the live server on 127.0.0.1: auth, Origin, rate, queue, caps,
liveness, metrics and events. (Frame size and shutdown: test_signaling_server.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import pytest
from helpers import WS_TIMEOUT, ws_closed_with, ws_join, ws_recv, ws_send
from helpers import until as eventually
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from rtclab.signaling import SignalingServer

TIMEOUT = WS_TIMEOUT


# ----------------------------------------------------------------------------- tokens


async def test_server_token_three_ways_and_refusal_closes() -> None:
    async with SignalingServer(token="s3cret") as srv:
        # join field (what browsers should use), query string, Authorization header
        a = await connect(srv.url)
        assert (await ws_join(a, "r", "a", token="s3cret"))["type"] == "room-joined"
        b = await connect(srv.url + "?token=s3cret")
        assert (await ws_join(b, "r", "b"))["type"] == "room-joined"
        c = await connect(srv.url, additional_headers={"Authorization": "Bearer s3cret"})
        assert (await ws_join(c, "r", "c"))["type"] == "room-joined"
        # wrong or missing: an error, then close 1008 (no guessing on one socket)
        for url, extra in (
            (srv.url, {}),
            (srv.url, {"token": "guess"}),
            (srv.url + "?token=nope", {}),
        ):
            bad = await connect(url)
            reply = await ws_join(bad, "r", "mallory", **extra)
            assert (reply["type"], reply["code"]) == ("error", "unauthorized")
            assert await ws_closed_with(bad) == 1008
        assert srv.metrics()["messages_refused_total"] == {"unauthorized": 3}
        assert srv.rooms() == {"r": ["a", "b", "c"]}
        for ws in (a, b, c):
            await ws.close()


async def test_room_tokens() -> None:
    async with SignalingServer(room_tokens={"vip": "v1p"}) as srv:
        lobby = await connect(srv.url)
        assert (await ws_join(lobby, "lobby", "x"))["type"] == "room-joined"  # open room
        vip = await connect(srv.url)
        assert (await ws_join(vip, "vip", "y", token="v1p"))["type"] == "room-joined"
        gate = await connect(srv.url)
        assert (await ws_join(gate, "vip", "z", token="wrong"))["code"] == "unauthorized"
        assert await ws_closed_with(gate) == 1008
        for ws in (lobby, vip):
            await ws.close()
    async with SignalingServer(token="s", room_tokens={"vip": "v"}) as srv:
        ws = await connect(srv.url)  # the server token does not open a room with its own
        assert (await ws_join(ws, "vip", "y", token="s"))["code"] == "unauthorized"
        await ws.close()


async def test_tokens_are_not_shown_to_observers() -> None:
    async with SignalingServer(token="s3cret") as srv:
        seen: list[Any] = []
        srv.add_listener(lambda d, who, m: seen.append(m))
        srv.add_event_listener(lambda *args: seen.append(args))
        ws = await connect(srv.url)
        await ws_join(ws, "r", "a", token="s3cret")
        await ws.close()
    assert seen and "s3cret" not in repr(seen)


# ----------------------------------------------------------------------------- Origin


async def test_origin_allow_list() -> None:
    async with SignalingServer(origins=["https://lab.example"]) as srv:
        ok = await connect(srv.url, origin="https://lab.example")  # type: ignore[arg-type]
        assert (await ws_join(ok, "r", "a"))["type"] == "room-joined"
        await ok.close()
        for origin in ("https://evil.example", None):
            with pytest.raises(InvalidStatus) as info:
                await connect(srv.url, origin=origin)  # type: ignore[arg-type]
            response = info.value.response
            assert response.status_code == 403
            assert json.loads(response.body)["code"] == "forbidden-origin"
        assert srv.metrics()["messages_refused_total"] == {"forbidden-origin": 2}
    async with SignalingServer(origins=["https://lab.example", None]) as srv:
        ws = await connect(srv.url)  # no Origin header: admitted explicitly
        await ws.close()


# ----------------------------------------------------------------------------- rate limit


async def test_rate_limit_refuses_before_parsing_and_recovers() -> None:
    async with SignalingServer(rate=20.0, burst=10) as srv:
        a = await connect(srv.url)
        b = await connect(srv.url)
        await ws_join(a, "r", "a")  # 1 token
        await ws_join(b, "r", "b")
        assert (await ws_recv(a))["type"] == "peer-joined"
        for i in range(15):
            await ws_send(a, {"type": "ice-candidate", "to": "b", "candidate": {"i": i}})
        got = [await ws_recv(b) for _ in range(9)]
        assert [m["candidate"]["i"] for m in got] == list(range(9))
        refusals = [await ws_recv(a) for _ in range(6)]
        assert {m["code"] for m in refusals} == {"rate-limited"}
        assert srv.metrics()["messages_refused_total"]["rate-limited"] == 6
        await asyncio.sleep(0.2)  # ~4 tokens back at 20/s
        await ws_send(a, {"type": "ice-candidate", "to": "b", "candidate": {"i": "again"}})
        assert (await ws_recv(b))["candidate"] == {"i": "again"}
        await a.close()
        await b.close()


# ----------------------------------------------------------------------------- slow readers


async def test_reader_that_never_reads_is_dropped_and_counted() -> None:
    async with SignalingServer(max_queue=64 * 1024, rate=None) as srv:
        sender = await connect(srv.url)
        await ws_join(sender, "r", "sender")
        # a raw client that upgrades, joins and then never reads again
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
        writer.write(masked(json.dumps({"type": "join", "roomId": "r", "userId": "slow"})))
        assert (await ws_recv(sender))["type"] == "peer-joined"
        payload = {"type": "offer", "to": "slow", "sdp": {"s": "x" * 30_000}}
        for _ in range(400):  # 12 MB at a client that reads nothing
            await ws_send(sender, payload)
            if srv.metrics()["disconnects_total"].get("slow-consumer"):
                break
            await asyncio.sleep(0)
        assert await ws_recv(sender) == {"type": "peer-left", "peerId": "slow"}
        metrics = srv.metrics()
        assert metrics["disconnects_total"] == {"slow-consumer": 1}
        assert metrics["clients"] == 1
        # the sender is fine and its further messages to the gone peer are refused
        await ws_send(sender, payload)
        assert (await ws_recv(sender))["code"] == "unknown-peer"
        writer.close()
        await sender.close()


def masked(text: str) -> bytes:
    """One masked client text frame (RFC 6455), for the raw-socket clients here."""
    data = text.encode()
    mask = os.urandom(4)
    head = (
        bytes((0x81, 0x80 | len(data)))
        if len(data) < 126
        else (bytes((0x81, 0x80 | 126)) + len(data).to_bytes(2, "big"))
    )
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def test_messages_to_a_closing_client_are_dropped_and_counted() -> None:
    async with SignalingServer() as srv:
        a = await connect(srv.url)
        b = await connect(srv.url)
        await ws_join(a, "r", "a")
        await ws_join(b, "r", "b")
        await ws_recv(a)
        conn = next(c for c in srv._conns if srv._hub.user_of(c) == "b")
        conn.close(1000, "bye")  # b is now closing: nothing more can be written to it
        await ws_send(a, {"type": "offer", "to": "b", "sdp": {}})
        await eventually(lambda: srv.metrics()["messages_dropped_total"] >= 1)
        await a.close()
        await b.close()


# ----------------------------------------------------------------------------- caps


async def test_room_size_room_count_and_client_caps() -> None:
    async with SignalingServer(max_room_size=2, max_rooms=2, max_clients=4) as srv:
        ws = [await connect(srv.url) for _ in range(4)]
        assert (await ws_join(ws[0], "r1", "a"))["type"] == "room-joined"
        assert (await ws_join(ws[1], "r1", "b"))["type"] == "room-joined"
        assert (await ws_join(ws[2], "r1", "c"))["code"] == "room-full"
        assert (await ws_join(ws[2], "r2", "c"))["type"] == "room-joined"
        assert (await ws_join(ws[3], "r3", "d"))["code"] == "too-many-rooms"
        assert (await ws_join(ws[3], "r2", "d"))["type"] == "room-joined"  # still usable
        extra = await connect(srv.url)  # the fifth client
        assert (await ws_recv(extra))["code"] == "server-full"
        assert await ws_closed_with(extra) == 1013
        refused = srv.metrics()["messages_refused_total"]
        assert refused == {"room-full": 1, "too-many-rooms": 1, "server-full": 1}
        await ws[0].close()
        await eventually(lambda: srv.metrics()["clients"] == 3)
        again = await connect(srv.url)  # a slot is free again
        assert (await ws_join(again, "r1", "e"))["type"] == "room-joined"
        for w in [*ws, again]:
            await w.close()


# ----------------------------------------------------------------------------- liveness


async def _joined_then_silent(srv: SignalingServer, room: str, user: str) -> asyncio.StreamWriter:
    """A raw client that joins and then answers nothing, not even pings: a dead peer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.write(masked(json.dumps({"type": "join", "roomId": room, "userId": user})))
    return writer


async def test_dead_client_is_reaped_with_peer_left_and_live_one_is_kept() -> None:
    async with SignalingServer(ping_interval=0.2, ping_timeout=0.2) as srv:
        events: list[tuple[Any, ...]] = []
        srv.add_event_listener(lambda *e: events.append(e))
        alive = await connect(srv.url, ping_interval=None)  # silent, but answers pings
        await ws_join(alive, "r", "alive")
        writer = await _joined_then_silent(srv, "r", "dead")
        assert (await ws_recv(alive))["peerId"] == "dead"
        assert await ws_recv(alive, 2.0) == {"type": "peer-left", "peerId": "dead"}
        assert srv.metrics()["disconnects_total"] == {"idle": 1}
        assert srv.rooms() == {"r": ["alive"]}
        await asyncio.sleep(0.6)  # well past the timeout: the answering client stays
        assert srv.rooms() == {"r": ["alive"]}
        assert ("signaling", "dead", "signaling-reaped") in [e[:3] for e in events]
        writer.close()
        await alive.close()


async def test_a_name_taken_by_a_dead_holder_is_free_within_seconds_a_live_one_keeps_it() -> None:
    """A peer whose NAT rebooted comes back under its own name while its old connection is
    not yet known dead: the join is refused (``duplicate-user``), the holder is challenged
    with a ping, and a silent holder is reaped long before the sweep would (20 s + 20 s
    here); a holder that answers keeps its seat."""
    async with SignalingServer(ping_interval=20.0, ping_timeout=20.0) as srv:
        other = await connect(srv.url, ping_interval=None)
        await ws_join(other, "r", "other")
        writer = await _joined_then_silent(srv, "r", "bob")  # a dead holder
        assert (await ws_recv(other))["peerId"] == "bob"
        back = await connect(srv.url, ping_interval=None)
        assert (await ws_join(back, "r", "bob"))["code"] == "duplicate-user"
        assert await ws_recv(other, 4.0) == {"type": "peer-left", "peerId": "bob"}
        assert srv.metrics()["disconnects_total"] == {"challenged": 1}
        assert (await ws_join(back, "r", "bob"))["type"] == "room-joined"
        # the seat is never taken from a holder that answers (websockets answers pings)
        thief = await connect(srv.url, ping_interval=None)
        assert (await ws_join(thief, "r", "bob"))["code"] == "duplicate-user"
        await asyncio.sleep(2.5)
        assert sorted(srv.rooms()["r"]) == ["bob", "other"]
        assert srv.metrics()["disconnects_total"] == {"challenged": 1}
        writer.close()
        for ws in (other, back, thief):
            await ws.close()


# ----------------------------------------------------------------------------- observability


async def test_metrics_api_and_prometheus_endpoint() -> None:
    async with SignalingServer() as srv:
        a = await connect(srv.url)
        b = await connect(srv.url)
        await ws_join(a, "r", "a")
        await ws_join(b, "r", "b")
        await ws_recv(a)
        await ws_send(a, {"type": "offer", "to": "b", "sdp": {}})
        await ws_recv(b)
        await a.send("nonsense")
        await ws_recv(a)
        m = srv.metrics()
        assert (m["clients"], m["rooms"], m["connections_total"]) == (2, 1, 2)
        assert m["messages_received_total"] == 4 and m["messages_relayed_total"] == 1
        assert m["messages_refused_total"] == {"invalid-json": 1}
        assert m["bytes_in_total"] > 0 and m["bytes_out_total"] > 0

        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=0.0.4" in head
        text = body.decode()
        assert "rtclab_signaling_clients 2" in text
        assert "rtclab_signaling_messages_relayed_total 1" in text
        assert 'rtclab_signaling_messages_refused_total{code="invalid-json"} 1' in text
        await a.close()
        await b.close()
    async with SignalingServer(metrics_path=None) as srv:
        assert "/metrics" not in srv._routes


async def test_metrics_need_the_server_token_when_there_is_one() -> None:
    async with SignalingServer(token="s3cret") as srv:

        async def status(path: str, headers: str = "") -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
            writer.close()
            return data.split(b" ", 2)[1]

        assert await status("/metrics") == b"401"
        assert await status("/metrics", "Authorization: Bearer nope\r\n") == b"401"
        assert await status("/metrics", "Authorization: Bearer s3cret\r\n") == b"200"
        assert await status("/metrics?token=s3cret") == b"200"


async def test_events_for_the_lab_events_frame() -> None:
    async with SignalingServer(max_room_size=1) as srv:
        events: list[tuple[str, str | None, str, Any]] = []
        srv.add_event_listener(lambda p, r, e, v: events.append((p, r, e, v)))
        broken = srv.add_event_listener(lambda *a: 1 / 0)  # a broken listener changes nothing
        a = await connect(srv.url)
        await ws_join(a, "r", "alice")
        b = await connect(srv.url)
        assert (await ws_join(b, "r", "bob"))["code"] == "room-full"
        await ws_send(a, {"type": "leave"})
        await a.close()
        await b.close()
        await eventually(lambda: srv.metrics()["clients"] == 0)
        broken()
    kinds = [(r, e) for _, r, e, _ in events]
    assert kinds[:2] == [("conn-1", "signaling-connected"), ("alice", "signaling-joined")]
    assert ("conn-2", "signaling-refused") in kinds and ("alice", "signaling-left") in kinds
    assert {p for p, *_ in events} == {"signaling"}
    refused = next(v for _, r, e, v in events if e == "signaling-refused")
    assert refused["code"] == "room-full"


async def test_lab_collector_can_record_server_events() -> None:
    from rtclab.stats.collector import StatsCollector

    collector = StatsCollector()
    async with SignalingServer() as srv:
        srv.add_event_listener(collector.record_event)
        ws = await connect(srv.url)
        await ws_join(ws, "r", "alice")
        await ws.close()
        await eventually(lambda: srv.metrics()["clients"] == 0)
    frame = collector.events
    assert list(frame["event"]) == ["signaling-connected", "signaling-joined", "signaling-left"]
    assert set(frame["peer"]) == {"signaling"}


async def test_internal_errors_are_counted_and_never_leak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with SignalingServer() as srv:
        ws = await connect(srv.url)
        monkeypatch.setattr(srv._hub, "receive_data", lambda conn, data, now: 1 / 0)
        await ws.send("{}")
        assert (await ws_recv(ws))["code"] == "internal-error"
        assert srv.metrics()["messages_refused_total"] == {"internal-error": 1}
        await ws.close()
