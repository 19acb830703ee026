"""The signaling server over real WebSockets on 127.0.0.1 (raw ``websockets`` clients)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import (
    WS_TIMEOUT,
    masked_frame,
    start_server,
    ws_client,
    ws_nothing,
    ws_recv,
    ws_send,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtclab.signaling import SignalingServer
from rtclab.signaling.connection import Connection
from rtclab.signaling.runner import serve_main

TIMEOUT = WS_TIMEOUT


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with SignalingServer() as srv:
        yield srv


async def pair(url: str, room: str = "r") -> tuple[ClientConnection, ClientConnection]:
    a = await ws_client(url, room, "alice")
    b = await ws_client(url, room, "bob")
    assert await ws_recv(a) == {"type": "peer-joined", "peerId": "bob"}
    return a, b


# ----------------------------------------------------------------------------- lifecycle


async def test_start_returns_url_with_real_port() -> None:
    srv = SignalingServer()
    url = await srv.start()
    try:
        assert srv.port != 0 and url == f"ws://127.0.0.1:{srv.port}/signal"
        ws = await ws_client(url)
        await ws.close()
    finally:
        await srv.stop()


async def test_stop_closes_clients_with_1001_and_frees_port_for_restart() -> None:
    srv = SignalingServer()
    url = await srv.start()
    port = srv.port
    ws = await ws_client(url, "r", "alice")
    unjoined = await ws_client(url)
    await srv.stop()
    for conn in (ws, unjoined):  # everyone is told, then closed with 1001
        assert await ws_recv(conn) == {
            "type": "error",
            "code": "server-shutdown",
            "message": "the server is shutting down",
        }
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(conn.recv(), TIMEOUT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert srv.metrics()["disconnects_total"] == {"shutdown": 2}
    with pytest.raises(OSError):  # nobody listens any more ...
        await connect(url, open_timeout=TIMEOUT)
    with socket.socket() as s:  # ... and the port can be bound again (as servers do)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    # ... and the same server object starts again on it, in the same loop
    srv.port = port
    assert await srv.start() == url
    try:
        ws2 = await ws_client(url, "r", "alice")  # the old room state is gone too
        await ws2.close()
    finally:
        await srv.stop()
    await srv.stop()  # idempotent


async def test_wrong_path_is_rejected_with_404(server: SignalingServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(f"ws://127.0.0.1:{server.port}/other")
    assert info.value.response.status_code == 404
    ws = await ws_client(f"{server.url}?token=x")  # query strings are fine
    await ws.close()


async def test_plain_http_is_refused(server: SignalingServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /signal HTTP/1.1\r\nHost: x\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), TIMEOUT)
    assert status.startswith(b"HTTP/1.1 426")
    writer.close()
    await writer.wait_closed()


async def test_compression_off_by_default_and_optional() -> None:
    async with SignalingServer() as srv:
        ws = await connect(srv.url)  # offers permessage-deflate by default
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.close()
    async with SignalingServer(compression="deflate") as srv:
        a = await connect(srv.url)
        assert a.response is not None
        assert "permessage-deflate" in a.response.headers["Sec-WebSocket-Extensions"]
        b = await ws_client(srv.url, "r", "bob")
        await ws_send(a, {"type": "join", "roomId": "r", "userId": "alice"})
        assert (await ws_recv(a))["peers"] == ["bob"]
        assert await ws_recv(b) == {"type": "peer-joined", "peerId": "alice"}
        await ws_send(a, {"type": "offer", "to": "bob", "sdp": {"sdp": "v=0" * 500}})
        assert (await ws_recv(b))["sdp"]["sdp"] == "v=0" * 500
        await ws_send(b, {"type": "answer", "to": "alice", "sdp": {"sdp": "ok"}})
        assert (await ws_recv(a))["from"] == "bob"
        await a.close()
        await b.close()


# ----------------------------------------------------------------------------- identity & rooms


async def test_join_relay_and_peer_joined(server: SignalingServer) -> None:
    a = await ws_client(server.url)
    await ws_send(a, {"type": "join", "roomId": "r", "userId": "alice"})
    assert await ws_recv(a) == {"type": "room-joined", "roomId": "r", "peers": []}
    b = await ws_client(server.url)
    await ws_send(b, {"type": "join", "roomId": "r", "userId": "bob"})
    assert await ws_recv(b) == {"type": "room-joined", "roomId": "r", "peers": ["alice"]}
    assert await ws_recv(a) == {"type": "peer-joined", "peerId": "bob"}
    sdp = {"type": "offer", "sdp": "v=0\r\n", "seq": 1}
    await ws_send(a, {"type": "offer", "to": "bob", "sdp": sdp})
    assert await ws_recv(b) == {"type": "offer", "to": "bob", "sdp": sdp, "from": "alice"}
    await ws_send(b, {"type": "answer", "to": "alice", "sdp": {"type": "answer"}})
    assert (await ws_recv(a))["from"] == "bob"
    await ws_send(b, {"type": "ice-candidate", "to": "alice", "candidate": None})
    assert await ws_recv(a) == {
        "type": "ice-candidate",
        "to": "alice",
        "candidate": None,
        "from": "bob",
    }
    assert server.stats["messages_relayed"] == 3
    assert server.stats["clients"] == 2 and server.stats["rooms"] == 1


async def test_duplicate_user_refused_while_first_keeps_working(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    impostor = await ws_client(server.url)
    await ws_send(impostor, {"type": "join", "roomId": "r", "userId": "alice"})
    reply = await ws_recv(impostor)
    assert reply["type"] == "error" and reply["code"] == "duplicate-user"
    await ws_send(b, {"type": "offer", "to": "alice", "sdp": {}})
    assert (await ws_recv(a))["from"] == "bob"
    await ws_nothing(impostor)
    await ws_nothing(b)  # no peer-joined for the refused impostor
    # the impostor may still join elsewhere under that name
    await ws_send(impostor, {"type": "join", "roomId": "r2", "userId": "alice"})
    assert (await ws_recv(impostor))["type"] == "room-joined"


async def test_forged_from_is_replaced(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    await b.send('{"type":"offer","from":"alice","to":"alice","sdp":{},"from":"carol"}')
    msg = await ws_recv(a)
    assert msg["from"] == "bob"
    await ws_send(b, {"type": "ice-candidate", "to": "alice", "candidate": {"from": "x"}})
    msg = await ws_recv(a)
    assert msg["from"] == "bob" and msg["candidate"] == {"from": "x"}


async def test_message_to_oneself_is_refused_and_connection_stays_usable(
    server: SignalingServer,
) -> None:
    a, b = await pair(server.url)
    await ws_send(a, {"type": "offer", "to": "alice", "sdp": {"type": "offer"}})
    reply = await ws_recv(a)
    assert (reply["type"], reply["code"]) == ("error", "self-addressed"), reply
    await ws_nothing(b)
    await ws_send(a, {"type": "offer", "to": "bob", "sdp": {}})
    assert (await ws_recv(b))["from"] == "alice"
    assert server.metrics()["messages_refused_total"] == {"self-addressed": 1}


async def test_relay_only_within_room(server: SignalingServer) -> None:
    a, b = await pair(server.url, "r1")
    c = await ws_client(server.url, "r2", "carol")
    await ws_send(c, {"type": "offer", "to": "alice", "sdp": {}})
    assert (await ws_recv(c))["code"] == "unknown-peer"
    await ws_nothing(a)
    await ws_nothing(b)


async def test_peer_left_on_leave_and_on_abrupt_close(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    c = await ws_client(server.url, "r", "carol")
    assert (await ws_recv(a))["peerId"] == "carol"
    assert (await ws_recv(b))["peerId"] == "carol"
    await ws_send(c, {"type": "leave", "roomId": "r"})
    assert await ws_recv(a) == {"type": "peer-left", "peerId": "carol"}
    assert await ws_recv(b) == {"type": "peer-left", "peerId": "carol"}
    await ws_nothing(c)
    # abrupt close: drop the TCP connection without a closing handshake
    assert b.transport is not None
    b.transport.abort()
    assert await ws_recv(a) == {"type": "peer-left", "peerId": "bob"}
    await a.close()
    for _ in range(100):
        if server.stats["rooms"] == 0 and server.stats["clients"] == 1:
            break
        await asyncio.sleep(0.01)
    assert server.rooms() == {} and server.stats["clients"] == 1  # only carol, unjoined


# ----------------------------------------------------------------------------- bad input


async def test_bad_input_gets_errors_and_connection_stays_usable(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    outsider = await ws_client(server.url)
    cases: list[tuple[str | bytes, str]] = [
        ("this is not json{", "invalid-json"),
        (b"\xff\xfe", "invalid-json"),
        ("[1,2]", "invalid-message"),
        ('{"type":"join","roomId":"r"}', "invalid-message"),
        ('{"type":"teleport"}', "unknown-type"),
        ('{"type":"offer","to":"alice","sdp":{}}', "not-joined"),
        ('{"type":"leave"}', "not-joined"),
    ]
    for frame, code in cases:
        await outsider.send(frame)
        reply = await ws_recv(outsider)
        assert (reply["type"], reply["code"]) == ("error", code), frame[:40]
        assert reply["message"]
    await ws_send(a, {"type": "join", "roomId": "x", "userId": "y"})
    assert (await ws_recv(a))["code"] == "already-joined"
    await ws_nothing(a)
    await ws_nothing(b)
    # still usable, and the others are unaffected
    await ws_send(outsider, {"type": "join", "roomId": "r", "userId": "carol"})
    assert (await ws_recv(outsider))["peers"] == ["alice", "bob"]
    await ws_send(a, {"type": "offer", "to": "carol", "sdp": {}})
    assert (await ws_recv(outsider))["from"] == "alice"
    errors = server.stats["errors"]
    assert errors["invalid-json"] == 2 and errors["already-joined"] == 1


@pytest.mark.parametrize("fragmented", [False, True])
async def test_oversized_frame_gets_error_then_1009(
    server: SignalingServer, fragmented: bool
) -> None:
    a, b = await pair(server.url)
    big = await ws_client(server.url)
    limit = server.limits.max_message_size
    frame = '{"type":"offer","to":"bob","sdp":{"s":"' + "x" * limit + '"}}'
    # fragments count together: the message limit, not the frame limit, applies
    await big.send(iter([frame[: limit // 2], frame[limit // 2 :]]) if fragmented else frame)
    reply = await ws_recv(big)
    assert (reply["type"], reply["code"]) == ("error", "message-too-large")
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(big.recv(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    await ws_send(a, {"type": "offer", "to": "bob", "sdp": {}})
    assert (await ws_recv(b))["from"] == "alice"
    # exactly at the limit is fine
    exact = '{"type":"offer","to":"bob","sdp":{"s":"'
    exact += "y" * (limit - len(exact) - 3) + '"}}'
    assert len(exact) == limit
    await a.send(exact)
    assert len((await ws_recv(b))["sdp"]["s"]) == limit - 42
    assert server.metrics()["messages_refused_total"]["message-too-large"] == 1


async def test_fragmented_and_binary_messages(server: SignalingServer) -> None:
    a, b = await pair(server.url)
    parts = ['{"type":"offer",', '"to":"bob",', '"sdp":{"k":1}}']
    await a.send(iter(parts))
    assert await ws_recv(b) == {"type": "offer", "to": "bob", "sdp": {"k": 1}, "from": "alice"}
    await a.send(b'{"type":"answer","to":"bob","sdp":{}}')
    assert (await ws_recv(b))["type"] == "answer"


async def test_internal_error_is_reported_and_server_survives(
    server: SignalingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await pair(server.url)
    original = server._hub.receive_data

    def boom(conn: Any, data: str | bytes, now: float) -> Any:
        if b"boom" in (data if isinstance(data, bytes) else data.encode()):
            raise RuntimeError("boom")
        return original(conn, data, now)

    monkeypatch.setattr(server._hub, "receive_data", boom)
    await ws_send(a, {"type": "offer", "to": "bob", "sdp": {"x": "boom"}})
    assert await ws_recv(a) == {
        "type": "error",
        "code": "internal-error",
        "message": "internal server error",
    }
    await ws_send(a, {"type": "offer", "to": "bob", "sdp": {}})
    assert (await ws_recv(b))["from"] == "alice"
    assert server.stats["errors"]["internal-error"] == 1


# ----------------------------------------------------------------------------- observer hook


async def test_listener_sees_both_directions(server: SignalingServer) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    remove = server.add_listener(lambda d, who, msg: seen.append((d, who, msg)))

    def broken(direction: str, who: str, message: dict[str, Any]) -> None:
        raise RuntimeError("a broken listener changes nothing")

    server.add_listener(broken)
    a, b = await pair(server.url)
    await ws_send(a, {"type": "offer", "to": "bob", "sdp": {"s": 1}})
    assert (await ws_recv(b))["from"] == "alice"
    assert ("in", "alice", {"type": "offer", "to": "bob", "sdp": {"s": 1}}) in seen
    assert ("out", "bob", {"type": "offer", "to": "bob", "sdp": {"s": 1}, "from": "alice"}) in seen
    assert ("out", "alice", {"type": "peer-joined", "peerId": "bob"}) in seen
    assert any(d == "in" and who.startswith("conn-") and m["type"] == "join" for d, who, m in seen)
    remove()
    n = len(seen)
    await ws_send(a, {"type": "offer", "to": "bob", "sdp": {}})
    await ws_recv(b)
    assert len(seen) == n


# ----------------------------------------------------------------------------- CLI entry point


def test_serve_main_reports_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert serve_main("127.0.0.1", port) == 1
    assert "cannot listen" in capsys.readouterr().err


async def test_module_cli_serves_until_sigterm() -> None:
    server = await start_server()
    try:
        assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/signal")
        ws = await ws_client(server.url, "r", "alice")
        server.proc.terminate()
        assert (await ws_recv(ws, 5))["code"] == "server-shutdown"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert await asyncio.wait_for(server.proc.wait(), 5) == 0
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "module,args",
    [("rtclab.signaling", ("-v",)), ("rtclab.cli", ("serve", "--no-client", "-v"))],
    ids=["python-m", "rtclab-serve"],
)
async def test_verbose_server_logs_joins_leaves_and_refusals(
    module: str, args: tuple[str, ...]
) -> None:
    server = await start_server(*args, module=module)
    try:
        alice = await ws_client(server.url, "lab", "alice")
        bob = await ws_client(server.url, "lab", "bob")
        assert (await ws_recv(alice))["type"] == "peer-joined"
        await ws_send(alice, {"type": "offer", "to": "alice", "sdp": {}})
        assert (await ws_recv(alice))["code"] == "self-addressed"
        await ws_send(bob, {"type": "leave"})
        assert (await ws_recv(alice))["type"] == "peer-left"
        await alice.close()
        await bob.close()
    finally:
        assert await server.stop() == 0
    log = await server.stderr()
    assert "joined room 'lab' as 'alice'" in log and "joined room 'lab' as 'bob'" in log, log
    assert "alice refused: self-addressed" in log, log
    assert "'bob' left room 'lab'" in log and "'alice' left room 'lab'" in log, log
    assert "Traceback" not in log, log


async def test_http_routes_beside_the_websocket() -> None:
    from rtclab.signaling.http import http_response

    async with SignalingServer() as server:
        server.add_route("/hello", lambda request: http_response(200, "hi " + request.path))
        server.add_route("/boom", lambda request: 1 / 0)  # type: ignore[arg-type,return-value]

        async def get(path: str) -> tuple[int, bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body

        assert await get("/hello?x=1") == (200, b"hi /hello?x=1")
        assert (await get("/nope"))[0] == 404
        assert (await get("/boom"))[0] == 500
        # the WebSocket keeps working beside the routes
        ws = await ws_client(server.url, "r", "alice")
        await ws.close()


# ----------------------------------------------------------------------------- frame splitting


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closing = False

    def write(self, data: Any) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def client_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    return masked_frame(payload, opcode, fin, mask=b"k3y!")


_UPGRADE = (
    "GET /signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(b'0123456789abcdef').decode()}\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
).encode()

# one message: (kind, payload size); a ping between messages; fragments of one message
stream_items = st.lists(
    st.tuples(
        st.sampled_from(["text", "binary", "fragmented", "ping"]),
        st.sampled_from([0, 5, 125, 126, 300, 65535, 65536, 70_000]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_items, st.lists(st.integers(1, 70_000), max_size=12), st.booleans())
async def test_frames_survive_any_split_into_reads(
    items: list[tuple[str, int]], cuts: list[int], pipelined: bool
) -> None:
    """Messages arrive whole and in order however TCP cuts the stream; pings get pongs."""
    srv = SignalingServer(max_message_size=100_000)
    srv._loop = asyncio.get_running_loop()
    got: list[bytes] = []
    srv._hooks.on_message = lambda conn, data, now: got.append(bytes(data))
    conn = Connection(srv._hooks, 1)
    transport = FakeTransport()
    conn.connection_made(transport)
    stream = bytearray()
    expected: list[bytes] = []
    pings = 0
    for i, (kind, size) in enumerate(items):
        body = (b'{"n":%d,"p":"' % i) + b"x" * size + b'"}'
        if kind == "ping":
            stream += client_frame(b"p%d" % i, opcode=9)
            pings += 1
        elif kind == "fragmented":
            stream += client_frame(body[:3], fin=False) + client_frame(body[3:], opcode=0)
            expected.append(body)
        else:
            stream += client_frame(body, opcode=1 if kind == "text" else 2)
            expected.append(body)
    data = bytes(_UPGRADE + stream) if pipelined else bytes(stream)
    if not pipelined:
        conn.data_received(_UPGRADE)
        assert conn.split
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        conn.data_received(data[a:b])
    assert got == expected
    srv._flush()
    assert transport.data.count(b"\x8a") >= pings  # a pong (0x8A) per ping
    conn.connection_lost(None)


async def test_frame_errors_still_close_in_split_mode() -> None:
    srv = SignalingServer()
    srv._loop = asyncio.get_running_loop()
    for bad, code in (
        (b"\x81\x05hello", 1002),  # unmasked client frame
        (client_frame(b"x", opcode=3), 1002),  # reserved opcode
        (bytes((0xC1, 0x81)) + b"k3y!" + b"x", 1002),
    ):  # RSV1 without deflate
        conn = Connection(srv._hooks, 1)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(_UPGRADE)
        srv._flush()
        start = len(transport.data)
        conn.data_received(bad + client_frame(b'{"type":"leave"}'))
        srv._flush()
        out = bytes(transport.data[start:])
        assert out[:1] == b"\x88" and struct.unpack("!H", out[2:4])[0] == code, out
        conn.connection_lost(None)


def test_rule_options_on_both_command_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtclab.cli import build_parser
    from rtclab.signaling.__main__ import main  # noqa: F401  (the module parses the same set)
    from rtclab.signaling.runner import server_options

    monkeypatch.setenv("RTCLAB_SIGNALING_TOKEN", "from-env")
    args = build_parser().parse_args(
        [
            "serve",
            "--room-token",
            "vip=v",
            "--origin",
            "https://lab.example",
            "--origin",
            "null-origin",
            "--rate",
            "0",
            "--max-room-size",
            "4",
            "--ping-interval",
            "0",
            "--no-metrics",
            "--redis",
            "redis://127.0.0.1:1/0",
        ]
    )
    options = server_options(args)
    assert options["token"] == "from-env" and options["room_tokens"] == {"vip": "v"}
    assert options["origins"] == ["https://lab.example", None]
    assert options["rate"] is None and options["ping_interval"] is None
    assert options["max_room_size"] == 4 and options["metrics_path"] is None
    SignalingServer(**options)  # every option is a constructor argument
    with pytest.raises(SystemExit):
        server_options(build_parser().parse_args(["serve", "--room-token", "novalue"]))


hostile_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "leave", "offer", "answer", "ice-candidate", "x"])},
    optional={
        "roomId": st.sampled_from(["r2", "r3"]),
        "userId": st.sampled_from(["a", "b", "c"]),
        "to": st.sampled_from(["a", "b", "c", ""]),
        "from": st.sampled_from(["a", "b"]),
        "sdp": st.just({}),
        "candidate": st.none(),
    },
)
hostile_chunks = st.lists(
    st.one_of(
        hostile_messages.map(lambda m: client_frame(json.dumps(m).encode())),
        st.binary(max_size=24),
        st.sampled_from(
            [
                client_frame(b"", opcode=9),
                client_frame(b"{", fin=False),
                client_frame(b"}", opcode=0),
                client_frame(b"\x03\xe8", opcode=8),
            ]
        ),
    ),
    max_size=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_chunks)
async def test_hostile_bytes_never_raise_or_reach_another_room(chunks: list[bytes]) -> None:
    """Whatever one connection sends, the adapter never raises, and a pair in another room
    neither hears from it nor changes identity."""
    srv = SignalingServer()
    srv._loop = asyncio.get_running_loop()
    conns = []
    for number, (room, user) in enumerate((("r", "a"), ("r", "b"), ("r2", "c")), 1):
        conn = Connection(srv._hooks, number)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(_UPGRADE)
        conn.data_received(
            client_frame(json.dumps({"type": "join", "roomId": room, "userId": user}).encode())
        )
        conns.append((conn, transport))
    srv._flush()
    (a, ta), (b, tb), (c, _) = conns
    seen = len(ta.data), len(tb.data)
    for chunk in chunks:
        c.data_received(chunk)
    srv._flush()
    assert (len(ta.data), len(tb.data)) == seen
    assert (srv._hub.user_of(a), srv._hub.user_of(b)) == ("a", "b")
    assert srv.rooms()["r"] == ["a", "b"]
    for conn, _ in conns:
        conn.connection_lost(None)
