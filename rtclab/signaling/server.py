"""WebSocket signaling server: a thin asyncio adapter around :class:`~.rooms.Rooms`.

It drives websockets' sans-I/O :class:`~websockets.server.ServerProtocol` from a plain
:class:`asyncio.Protocol` instead of using ``websockets.asyncio.server``: that layer spends
a task, futures and a message queue on every connection and message, which halved
throughput against a Node ``ws`` relay. Here a frame is handled synchronously in
``data_received``, relayed frames are built by splicing (see :mod:`.protocol`), and each
recipient's frames are coalesced into one write per event-loop iteration.

The rules that need a clock or the socket live here, each kept to a few operations on the
relay path: one clock read per TCP read (shared by the rate limit and the liveness check),
a token bucket per connection, a bound on unsent bytes checked once per flush, and the
frame-size limit enforced by websockets' parser before the payload is even buffered.
Pings and idle reaping run from one periodic sweep, not a timer per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import PayloadTooBig
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, SEND_EOF
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

from .metrics import CONTENT_TYPE, render_prometheus
from .protocol import (
    MAX_MESSAGE_SIZE,
    ErrorCode,
    ErrorMessage,
    Join,
    Leave,
    RoomJoined,
    ServerMessage,
    parse,
)
from .rooms import Rooms
from .rules import (
    TokenBucket,
    credential_from_request,
    liveness,
    origin_allowed,
    token_matches,
)

if TYPE_CHECKING:
    from .cluster import RedisCluster

__all__ = [
    "EventListener",
    "HttpHandler",
    "Listener",
    "SignalingServer",
    "StatsListener",
    "http_response",
    "serve_main",
]

logger = logging.getLogger("rtclab.signaling")
_ws_logger = logging.getLogger("rtclab.signaling.ws")

HttpHandler = Callable[[Request], Response]
"""A plain-HTTP route: gets the parsed request, returns the whole response (build it with
:func:`http_response`). Runs synchronously in the loop: keep it quick."""

Listener = Callable[[str, str, dict[str, Any]], None]
"""``listener(direction, who, message)``: direction is ``"in"`` or ``"out"``, ``who`` the
sender's / recipient's userId (``"conn-N"`` before it joined)."""

EventListener = Callable[[str, "str | None", str, Any], None]
"""``listener(peer, remote, event, value)``, the shape of the lab's events frame
(:meth:`rtclab.stats.StatsCollector.record_event`): ``peer`` is the server's :attr:`name`,
``remote`` the client's userId (or ``conn-N``), ``event`` one of ``signaling-connected``,
``-joined``, ``-left``, ``-refused``, ``-reaped``, ``-slow-consumer``, ``-shutdown``."""

StatsListener = Callable[[str, str, "tuple[dict[str, Any], ...]"], None]
"""``listener(user, room, rows)``: a joined client's ``stats`` report (see
:class:`~.protocol.Stats`); ``user`` is the identity the server bound at ``join``."""

_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY
_CONT: Final = Opcode.CONT
_HEAD16: Final = struct.Struct("!BBH").pack
_HEAD64: Final = struct.Struct("!BBQ").pack
_PING: Final = b"\x89\x00"  # unmasked ping, empty payload: every WebSocket stack answers it
_monotonic: Final = time.monotonic
_INTERNAL_ERROR: Final = ErrorMessage("internal-error", "internal server error").encode()
_RATE_LIMITED: Final = ErrorMessage("rate-limited", "too many messages; slow down").encode()
_SHUTDOWN: Final = ErrorMessage("server-shutdown", "the server is shutting down").encode()
_SERVER_FULL: Final = ErrorMessage("server-full", "too many clients; try again later").encode()


class Recipient(Protocol):
    """What :class:`Rooms` holds for a member: a local connection, or a remote member's
    proxy (:mod:`.cluster`); either takes an encoded frame."""

    label: str

    def send(self, payload: bytes) -> None: ...

    def __hash__(self) -> int: ...


def http_response(
    status: int,
    body: bytes | str = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> Response:
    """A complete HTTP/1.1 response for an :data:`HttpHandler` (connection closes after it)."""
    data = body.encode() if isinstance(body, str) else body
    reasons = {
        200: "OK",
        204: "No Content",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    all_headers = Headers()
    all_headers["Content-Type"] = content_type
    all_headers["Content-Length"] = str(len(data))
    all_headers["Connection"] = "close"
    all_headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        all_headers[name] = value
    return Response(status, reasons.get(status, "Unknown"), all_headers, data)


def _text_header(length: int) -> bytes:
    """Header of an unmasked, unfragmented, uncompressed text frame (RFC 6455 §5.2).

    Valid with permessage-deflate too: RSV1 clear marks a message as not compressed.
    """
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return _HEAD16(0x81, 126, length)
    return _HEAD64(0x81, 127, length)


def _header(headers: Headers, name: str) -> str | None:
    """A single-valued header, ``None`` if absent; repeated ones count as invalid ("")."""
    try:
        return headers.get(name)
    except MultipleValuesError:
        return ""


class _Connection(asyncio.Protocol):
    """One TCP connection: HTTP upgrade, then WebSocket frames in, frames out."""

    __slots__ = (
        "bucket",
        "credential",
        "fast",
        "frags",
        "inbuf",
        "label",
        "last_ping",
        "last_seen",
        "out",
        "pending",
        "proto",
        "server",
        "slow",
        "split",
        "timer",
        "transport",
        "want_eof",
        "writable",
    )

    def __init__(self, server: SignalingServer, number: int) -> None:
        self.server = server
        self.label = f"conn-{number}"
        self.transport: asyncio.Transport | None = None
        self.proto = ServerProtocol(
            extensions=server._extensions,
            max_size=server.max_message_size,
            logger=_ws_logger,
        )
        self.out: list[bytes] = []  # frames waiting for the next flush
        self.want_eof = False
        self.writable = False  # True from the 101 response until our close frame is queued
        self.fast = False  # no extension negotiated: build frames ourselves
        self.slow = False  # disconnected for not reading: what is still sent to it is dropped
        self.frags: list[bytes] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.bucket: TokenBucket | None = None
        self.credential: str | None = None
        self.last_seen = self.last_ping = _monotonic()
        self.pending: list[bytes] | None = None  # frames held while a cluster join is settled
        self.split = False  # frames are split here, not by websockets (see _split)
        self.inbuf = b""  # the incomplete frame at the end of the last read (split mode)

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._conns.add(self)
        self._set_timer(self.server.open_timeout)

    def data_received(self, data: bytes) -> None:
        server = self.server
        server.bytes_in += len(data)
        self.last_seen = now = _monotonic()
        if self.split:
            self._split(data, now)
            return
        self._feed(data, now)
        if self.fast and self.writable and not self.split and data.endswith(b"\r\n\r\n"):
            # Upgraded by this read, with no frame pipelined behind the request: websockets'
            # parser stands at a frame boundary, so from here frames may be split by us.
            self.split = not self.proto.reader.buffer

    def _split(self, data: bytes, now: float) -> None:
        """Split complete frames ourselves and hand whole text/binary messages on directly.

        websockets' frame parser (a generator stepping through ``read_exact``, a ``Frame``
        and an ``Opcode`` per frame) was a third of the relay path's CPU. This loop takes
        only the common case, complete, unfragmented, masked data frames within the size
        limit, and feeds every other frame to websockets whole, so its state machine stays
        at a frame boundary and keeps the rules: control frames, fragments, close, and the
        protocol errors (unmasked, oversized, reserved bits) that end the connection.
        """
        buf = self.inbuf + data if self.inbuf else data
        self.inbuf = b""
        n = len(buf)
        pos = 0
        server = self.server
        limit = server.max_message_size
        view = memoryview(buf)
        while pos + 2 <= n:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                start = pos + 6
            elif length == 126:
                if pos + 4 > n:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 8
            else:
                if pos + 10 > n:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 14
            if not b1 & 0x80 or length > limit:
                # a protocol error or an oversized message: websockets refuses it (1002 /
                # 1009) from the header alone, before any payload is buffered
                self.split = False
                self._feed(buf[pos:], now)
                return
            end = start + length
            if end > n:
                break
            if (b0 == 0x81 or b0 == 0x82) and self.frags is None:
                server._on_message(self, apply_mask(view[start:end], buf[start - 4 : start]), now)
            else:
                self._feed(buf[pos:end], now)
                if self.proto.state is not OPEN:  # closing: websockets has the rest
                    self.split = False
                    if end < n:
                        self._feed(buf[end:], now)
                    return
            pos = end
        if pos < n:
            self.inbuf = buf[pos:]

    def _feed(self, data: bytes, now: float) -> None:
        """Let websockets parse ``data`` (handshake, control frames, fragments, errors)."""
        proto = self.proto
        server = self.server
        try:
            proto.receive_data(data)
        except EOFError:  # data after EOF: nothing to do
            return
        events = proto.events_received()
        ctrl = proto.data_to_send()  # pongs, close echo: they go after our replies
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _TEXT or opcode is _BINARY:
                    # bytes() of a bytes object is that object: no copy
                    if event.fin:
                        server._on_message(self, bytes(event.data), now)
                    else:
                        self.frags = [bytes(event.data)]
                elif opcode is _CONT and self.frags is not None:
                    self.frags.append(bytes(event.data))
                    if event.fin:
                        payload = b"".join(self.frags)
                        self.frags = None
                        server._on_message(self, payload, now)
            elif type(event) is Request:
                self._handshake(event)
        if proto.state is not OPEN:
            if self.writable and type(proto.parser_exc) is PayloadTooBig:
                # websockets refused the frame from its header (nothing buffered) and
                # queued close 1009; say why first, as an error message, like any refusal.
                server._refused(self, "message-too-large")
                text = ErrorMessage(
                    "message-too-large", f"message exceeds {server.max_message_size} bytes"
                ).encode()
                self.send(text)
            self.writable = False
            if proto.close_expected():
                self._set_timer(server.close_timeout)
        if ctrl:
            self._queue_proto(ctrl)

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost cleans up

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.writable = False
        self.out = []
        self.server._on_lost(self)

    # ---------------------------------------------------------------- writing

    def send(self, payload: bytes) -> None:
        """Queue one text message; dropped (and counted) if the connection is closing."""
        if not self.writable:
            self.server.dropped += 1
            return
        if not self.out:
            self.server._mark_dirty(self)
        if self.fast:
            n = len(payload)
            self.out.append(bytes((0x81, n)) if n < 126 else _text_header(n))
            self.out.append(payload)
        elif self.proto.state is OPEN:
            self.proto.send_text(payload)
            self.out.extend(self.proto.data_to_send())

    def send_raw(self, frame: bytes) -> None:
        """Queue an already framed control frame (our pings)."""
        if self.writable:
            if not self.out:
                self.server._mark_dirty(self)
            self.out.append(frame)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (or drop the connection if not upgraded yet)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.proto.state is OPEN:
            self.proto.send_close(code, reason)
            self._queue_proto(self.proto.data_to_send())
            self.writable = False
            self._set_timer(self.server.close_timeout)
        else:
            self.transport.close()

    def flush(self) -> None:
        transport = self.transport
        out = self.out
        self.out = []
        if transport is None or transport.is_closing():
            return
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.server.bytes_out += len(data)
            transport.write(data)
            if transport.get_write_buffer_size() > self.server.max_queue:
                self.server._slow_consumer(self)
                return
        if self.want_eof:
            self.want_eof = False
            try:
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
            except OSError:  # the peer reset the connection meanwhile
                transport.abort()

    def abort(self) -> None:
        """Drop the TCP connection now (no closing handshake: the peer is not listening)."""
        self.writable = False
        if self.transport is not None:
            self.transport.abort()

    def _queue_proto(self, writes: list[bytes]) -> None:
        if not self.out:
            self.server._mark_dirty(self)
        for chunk in writes:
            if chunk is SEND_EOF or not chunk:
                self.want_eof = True
            else:
                self.out.append(chunk)

    def _set_timer(self, delay: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(delay, self._abort)

    def _abort(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.abort()

    # ---------------------------------------------------------------- handshake

    def _handshake(self, request: Request) -> None:
        proto = self.proto
        server = self.server
        path = request.path.partition("?")[0]
        if path != server.path:
            response = server._http(request, path)
        elif not origin_allowed(_header(request.headers, "Origin"), server.origins):
            # A plain 403 rather than an open socket: a page from a foreign origin gets
            # nothing to talk to. The body still says why, as every refusal does.
            server._refused(self, "forbidden-origin")
            error = ErrorMessage("forbidden-origin", "this Origin is not allowed")
            response = http_response(403, error.encode(), "application/json")
        else:
            response = proto.accept(request)
        proto.send_response(response)
        self._queue_proto(proto.data_to_send())
        if response.status_code == 101:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.writable = True
            self.fast = not proto.extensions
            self.credential = credential_from_request(
                request.path, _header(request.headers, "Authorization")
            )
            server._on_open(self)


class SignalingServer:
    """The signaling server, run inside an already running event loop (e.g. a Jupyter kernel).

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). Compression is
    off by default: signaling frames are small and permessage-deflate costs CPU and memory
    per connection; pass ``compression="deflate"`` to accept it when a client offers it.

    Rules (every refusal is an ``error`` message with a ``code``, counted in :meth:`metrics`):

    - ``token`` / ``room_tokens``: a ``join`` must present the room's token, else the
      server's (``unauthorized``, then close 1008). Clients send it as the ``token`` field
      of ``join`` (browsers: recommended), ``Authorization: Bearer`` or ``?token=``.
    - ``origins``: Origin allow-list (``None`` in it admits clients sending no Origin);
      others get HTTP 403.
    - ``max_message_size``: larger frames get ``message-too-large`` and close 1009.
    - ``rate`` / ``burst``: token bucket per connection (``rate-limited``, frame dropped).
    - ``max_queue``: a client with more unsent bytes is disconnected, what is still
      addressed to it is dropped and counted; server memory per client stays bounded.
    - ``max_room_size`` (``room-full``), ``max_rooms`` (``too-many-rooms``),
      ``max_clients`` (``server-full``, then close 1013).
    - ``ping_interval`` / ``ping_timeout``: silent clients are pinged, and dropped with
      ``peer-left`` to their room when even the ping goes unanswered. ``None`` disables.
    - :meth:`stop` sends ``server-shutdown`` to every client, then closes with 1001.

    ``redis_url`` spreads rooms over several server processes (see :mod:`.cluster`; needs
    ``pip install 'rtclab[redis]'``). ``metrics_path`` serves Prometheus text over HTTP
    (with ``token`` set, only to ``Authorization: Bearer <token>`` or ``?token=``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/signal",
        compression: Literal["deflate"] | None = None,
        *,
        token: str | None = None,
        room_tokens: Mapping[str, str] | None = None,
        origins: Collection[str | None] | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        rate: float | None = 100.0,
        burst: int = 1000,
        max_queue: int = 2**20,
        max_room_size: int | None = 64,
        max_rooms: int | None = 10_000,
        max_clients: int | None = 10_000,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
        metrics_path: str | None = "/metrics",
        redis_url: str | None = None,
        redis_prefix: str = "rtclab:signal",
        name: str = "signaling",
    ) -> None:
        if compression not in (None, "deflate"):
            raise ValueError(f"compression must be None or 'deflate', not {compression!r}")
        self.host = host
        self.port = port
        self.path = path
        self.compression = compression
        self.name = name
        """The ``peer`` column of the events this server reports."""
        self.origins: frozenset[str | None] | None = (
            None if origins is None else frozenset(o if o is None else o.lower() for o in origins)
        )
        self.max_message_size = max_message_size
        self.rate = rate
        self.burst = burst
        self.max_queue = max_queue
        """Unsent bytes after which a client that does not read is disconnected."""
        self.max_clients = max_clients
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self._extensions: list[ServerExtensionFactory] | None = (
            list(enable_server_permessage_deflate(None)) if compression else None
        )
        self._rooms: Rooms[Recipient] = Rooms(
            max_message_size=max_message_size,
            max_room_size=max_room_size,
            max_rooms=max_rooms,
            token=token,
            room_tokens=room_tokens,
        )
        self._conns: set[_Connection] = set()  # every TCP connection, upgraded or not
        self._dirty: list[_Connection] = []
        self._flush_scheduled = False
        self._listeners: list[Listener] = []
        self._event_listeners: list[EventListener] = []
        self._stats_listeners: list[StatsListener] = []
        self._rooms.on_stats = self._on_stats
        self._careful = False  # listeners or a cluster: take the parse-then-handle path
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._cluster: RedisCluster | None = None
        self._counter = 0
        self._received = 0
        self.connections_total = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.dropped = 0
        self.disconnects: Counter[str] = Counter()
        self._routes: dict[str, HttpHandler] = {}
        if metrics_path is not None:
            self.add_route(metrics_path, self._metrics_route)

    # ---------------------------------------------------------------- HTTP routes

    def add_route(self, path: str, handler: HttpHandler) -> None:
        """Serve plain HTTP on ``path`` beside the WebSocket (e.g. credentials, metrics, pages)."""
        if path == self.path:
            raise ValueError(f"{path} is the WebSocket path")
        self._routes[path] = handler

    def remove_route(self, path: str) -> None:
        self._routes.pop(path, None)

    def _http(self, request: Request, path: str) -> Response:
        handler = self._routes.get(path)
        if handler is None:
            return http_response(404, "Not Found\n")
        try:
            return handler(request)
        except Exception:
            logger.exception("HTTP handler for %s failed", path)
            return http_response(500, "internal server error\n")

    def _metrics_route(self, request: Request) -> Response:
        """Prometheus text; behind the server token when there is one (room names stay
        private, but counts are still nobody else's business)."""
        token = self._rooms.token
        if token is not None and not token_matches(
            credential_from_request(request.path, _header(request.headers, "Authorization")),
            token,
        ):
            return http_response(401, "unauthorized\n", headers={"WWW-Authenticate": "Bearer"})
        return http_response(200, render_prometheus(self.metrics()), CONTENT_TYPE)

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> str:
        """Listen and return the URL. Never blocks the loop; port 0 picks a free port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        if self.redis_url is not None:
            from .cluster import RedisCluster

            self._cluster = RedisCluster(self, self.redis_url, prefix=self.redis_prefix)
            await self._cluster.start()
        self._update_careful()
        try:
            self._server = await self._loop.create_server(
                self._new_connection, self.host, self.port
            )
        except BaseException:
            if self._cluster is not None:
                await self._cluster.stop()
                self._cluster = None
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        if self.ping_interval is not None:
            self._sweeper = self._loop.create_task(self._sweep(self.ping_interval))
        logger.info("signaling server listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Tell every client (``server-shutdown``, then close 1001) and free the port;
        :meth:`start` works again afterwards."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conn in list(self._conns):
            if conn.writable:
                conn.send(_SHUTDOWN)
                self.disconnects["shutdown"] += 1
                if self._event_listeners:
                    self._event(self._who(conn), "signaling-shutdown", None)
            conn.close(1001, "server shutting down")
        self._flush()
        if self._conns and self._idle is not None:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), self.close_timeout)
            except asyncio.TimeoutError:
                for conn in list(self._conns):
                    if conn.transport is not None:
                        conn.transport.abort()
                await asyncio.sleep(0)
        if self._cluster is not None:
            await self._cluster.stop()
            self._cluster = None
            self._update_careful()
        await server.wait_closed()
        logger.info("signaling server on %s stopped", self.url)

    async def __aenter__(self) -> SignalingServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---------------------------------------------------------------- observation

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(direction, who, message)`` for every message; returns a remover.

        Listeners run synchronously on the relay path: keep them quick. With none
        registered, relaying costs nothing extra.
        """
        self._listeners.append(listener)
        self._update_careful()
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        self._update_careful()

    def add_event_listener(self, listener: EventListener) -> Callable[[], None]:
        """Report connection lifecycle and refusals as ``listener(peer, remote, event,
        value)``, the lab's events-frame shape: ``server.add_event_listener(
        collector.record_event)``. Relayed messages are not events (use
        :meth:`add_listener`); returns a remover."""
        self._event_listeners.append(listener)
        self._update_careful()
        return lambda: self.remove_event_listener(listener)

    def remove_event_listener(self, listener: EventListener) -> None:
        if listener in self._event_listeners:
            self._event_listeners.remove(listener)
        self._update_careful()

    def add_stats_listener(self, listener: StatsListener) -> Callable[[], None]:
        """Call ``listener(user, room, rows)`` for every ``stats`` report of a joined client
        (browsers report their getStats this way; see :mod:`rtclab.web`); returns a remover.

        Reports are parsed only when they arrive, so the relay path costs nothing extra;
        with no listener they are accepted and dropped.
        """
        self._stats_listeners.append(listener)
        return lambda: self.remove_stats_listener(listener)

    def remove_stats_listener(self, listener: StatsListener) -> None:
        if listener in self._stats_listeners:
            self._stats_listeners.remove(listener)

    def _on_stats(self, user: str, room: str, rows: tuple[dict[str, Any], ...]) -> None:
        for listener in list(self._stats_listeners):
            try:
                listener(user, room, rows)
            except Exception:
                logger.exception("stats listener %r failed", listener)

    def metrics(self) -> dict[str, Any]:
        """Counters since construction (gauges: now), as :func:`.metrics.render_prometheus`
        and ``GET /metrics`` show them."""
        rooms = self._rooms
        return {
            "clients": rooms.connections,
            "rooms": rooms.room_count,
            "connections_total": self.connections_total,
            "messages_received_total": self._received,
            "messages_relayed_total": rooms.relayed,
            "messages_refused_total": dict(rooms.errors),
            "messages_dropped_total": self.dropped,
            "bytes_in_total": self.bytes_in,
            "bytes_out_total": self.bytes_out,
            "disconnects_total": dict(self.disconnects),
        }

    @property
    def stats(self) -> dict[str, Any]:
        """Short summary (kept for notebooks written against the first version)."""
        rooms = self._rooms
        return {
            "clients": rooms.connections,
            "rooms": rooms.room_count,
            "messages_received": self._received,
            "messages_relayed": rooms.relayed,
            "errors": dict(rooms.errors),
        }

    def rooms(self) -> dict[str, list[str]]:
        """Snapshot: roomId -> userIds (with a cluster: members on every process)."""
        return self._rooms.rooms()

    # ---------------------------------------------------------------- internals: events

    def _new_connection(self) -> _Connection:
        self._counter += 1
        return _Connection(self, self._counter)

    def _update_careful(self) -> None:
        self._careful = bool(self._listeners or self._event_listeners or self._cluster)

    def _on_open(self, conn: _Connection) -> None:
        if self.max_clients is not None and self._rooms.connections >= self.max_clients:
            self._refused(conn, "server-full")
            conn.send(_SERVER_FULL)
            conn.close(1013, "server full")
            return
        self.connections_total += 1
        if self.rate is not None:
            conn.bucket = TokenBucket(self.rate, self.burst, conn.last_seen)
        self._rooms.connect(conn, conn.credential)
        if self._event_listeners:
            self._event(conn.label, "signaling-connected", None)

    def _on_lost(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        try:
            rooms = self._rooms
            room = user = None
            if self._careful:
                room, user = rooms.room_of(conn), rooms.user_of(conn)
            out = rooms.disconnect(conn)
            if out:
                self._deliver(out)
            if self._careful and room is not None and user is not None:
                if self._event_listeners:
                    self._event(user, "signaling-left", {"room": room})
                if self._cluster is not None:
                    self._cluster.leave(room, user)
        except Exception:
            logger.exception("%s: error while disconnecting", conn.label)
        if not self._conns and self._idle is not None:
            self._idle.set()

    def _on_message(self, conn: _Connection, data: bytes, now: float) -> None:
        self._received += 1
        if not conn.writable:  # frames pipelined before the upgrade, or after our close
            return
        bucket = conn.bucket
        if bucket is not None and not bucket.take(now):
            # refused before parsing: a flood costs one float update and a canned reply
            self._refused(conn, "rate-limited")
            conn.send(_RATE_LIMITED)
            return
        if conn.pending is not None:  # a cluster join is in flight: keep the order
            conn.pending.append(data)
            return
        if self._careful:
            self._handle(conn, data)
            return
        rooms = self._rooms  # the relay path, inlined: one call fewer per message
        try:
            for target, message in rooms.receive_data(conn, data):
                target.send(message.encode())
            if rooms.closing:
                self._close_refused()
        except Exception:
            logger.exception("%s: error while handling a message", conn.label)
            self._refused(conn, "internal-error")
            conn.send(_INTERNAL_ERROR)

    def _handle(self, conn: _Connection, data: bytes) -> None:
        rooms = self._rooms
        try:
            if self._careful:
                self._handle_carefully(conn, data)
            else:
                self._deliver(rooms.receive_data(conn, data))
            if rooms.closing:
                self._close_refused()
        except Exception:
            logger.exception("%s: error while handling a message", conn.label)
            self._refused(conn, "internal-error")
            conn.send(_INTERNAL_ERROR)

    def _handle_carefully(self, conn: _Connection, data: bytes) -> None:
        """The path with observers or a cluster: parse first, then look at what happened."""
        rooms = self._rooms
        message = parse(data, max_size=self.max_message_size)
        if self._listeners:
            self._notify("in", self._who(conn), message.to_dict())
        cluster = self._cluster
        if type(message) is Join and cluster is not None:
            refusal = rooms.check_join(conn, message, registry=True)
            if refusal:
                self._deliver(refusal)
            else:
                conn.pending = []
                cluster.join(conn, message)
            return
        before = rooms.room_of(conn), rooms.user_of(conn)
        out = rooms.receive(conn, message)
        self._deliver(out)
        if type(message) is Join and out and type(out[0][1]) is RoomJoined:
            if self._event_listeners:
                self._event(message.user_id, "signaling-joined", {"room": message.room_id})
        elif type(message) is Leave and before[0] is not None and rooms.room_of(conn) is None:
            room, user = before
            assert room is not None and user is not None
            if self._event_listeners:
                self._event(user, "signaling-left", {"room": room})
            if cluster is not None:
                cluster.leave(room, user)

    def _close_refused(self) -> None:
        rooms = self._rooms
        for conn in rooms.closing:
            if isinstance(conn, _Connection):
                conn.close(1008, "unauthorized")
        rooms.closing.clear()

    def _deliver(self, out: list[tuple[Recipient, ServerMessage]]) -> None:
        if self._careful:
            for target, message in out:
                if self._listeners:
                    self._notify("out", self._who(target), message.to_dict())
                if type(message) is ErrorMessage and self._event_listeners:
                    self._event(
                        self._who(target),
                        "signaling-refused",
                        {"code": message.code, "message": message.message},
                    )
        for target, message in out:
            target.send(message.encode())

    def _refused(self, conn: _Connection, code: ErrorCode) -> None:
        """Count a refusal made here rather than in :class:`Rooms` (same counter)."""
        self._rooms.errors[code] += 1
        if self._event_listeners:
            self._event(self._who(conn), "signaling-refused", {"code": code})

    def _slow_consumer(self, conn: _Connection) -> None:
        """``conn`` stopped reading: its unsent bytes passed :attr:`max_queue`. Dropping
        it (its room hears ``peer-left``) is the only bound that holds against a client
        that never reads; a close frame would only queue behind the backlog."""
        logger.warning(
            "%s: slow consumer, %d bytes unsent: disconnected",
            conn.label,
            conn.transport.get_write_buffer_size() if conn.transport else 0,
        )
        self.disconnects["slow-consumer"] += 1
        conn.slow = True
        if self._event_listeners:
            self._event(self._who(conn), "signaling-slow-consumer", None)
        conn.abort()

    async def _sweep(self, interval: float) -> None:
        """Ping silent clients; drop those that stay silent (dead TCP peers never send FIN)."""
        period = max(0.05, min(interval, self.ping_timeout) / 2)
        timeout = self.ping_timeout
        while True:
            await asyncio.sleep(period)
            now = _monotonic()
            for conn in list(self._conns):
                if not conn.writable:
                    continue  # handshake or closing: those have their own timers
                state = liveness(now, conn.last_seen, conn.last_ping, interval, timeout)
                if state == "ping":
                    conn.last_ping = now
                    conn.send_raw(_PING)
                elif state == "dead":
                    self.disconnects["idle"] += 1
                    if self._event_listeners:
                        self._event(
                            self._who(conn),
                            "signaling-reaped",
                            {"silent_s": round(now - conn.last_seen, 3)},
                        )
                    conn.abort()

    def _who(self, conn: Recipient) -> str:
        return self._rooms.user_of(conn) or conn.label

    def _notify(self, direction: str, who: str, message: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(direction, who, message)
            except Exception:
                logger.exception("signaling listener %r failed", listener)

    def _event(self, remote: str | None, event: str, value: Any) -> None:
        for listener in list(self._event_listeners):
            try:
                listener(self.name, remote, event, value)
            except Exception:
                logger.exception("signaling event listener %r failed", listener)

    def _mark_dirty(self, conn: _Connection) -> None:
        self._dirty.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:
                logger.exception("%s: write failed", conn.label)

    # ---------------------------------------------------------------- internals: cluster

    def _cluster_joined(self, conn: Recipient, room_id: str, user_id: str) -> None:
        """The registry seated ``conn`` (a local connection): tell it and its local room."""
        assert isinstance(conn, _Connection)
        pending, conn.pending = conn.pending, None
        if not self._rooms.is_local(conn):  # it went away meanwhile: undo the seat
            assert self._cluster is not None
            self._cluster.leave(room_id, user_id)
            return
        self._deliver(self._rooms.add_member(conn, room_id, user_id))
        if self._event_listeners:
            self._event(user_id, "signaling-joined", {"room": room_id})
        self._replay(conn, pending)

    def _cluster_refused(self, conn: Recipient, code: ErrorCode, text: str) -> None:
        assert isinstance(conn, _Connection)
        pending, conn.pending = conn.pending, None
        if self._rooms.is_local(conn):
            self._rooms.errors[code] += 1
            self._deliver([(conn, ErrorMessage(code, text))])
            self._replay(conn, pending)

    def _replay(self, conn: _Connection, pending: list[bytes] | None) -> None:
        for i, data in enumerate(pending or ()):
            if conn.pending is not None:  # another join went to the registry: wait again
                conn.pending.extend((pending or [])[i:])
                return
            self._handle(conn, data)


def _env_token() -> str | None:
    return os.environ.get("RTCLAB_SIGNALING_TOKEN") or None


def add_server_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The rule options shared by ``python -m rtclab.signaling`` and ``rtclab serve``."""
    parser.add_argument(
        "--token",
        default=None,
        help="token every join must present (default: $RTCLAB_SIGNALING_TOKEN; "
        "prefer the variable: command lines are visible to other users)",
    )
    parser.add_argument(
        "--room-token",
        action="append",
        default=[],
        metavar="ROOM=TOKEN",
        help="a room that needs its own token (repeatable)",
    )
    parser.add_argument(
        "--origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allowed browser Origin (repeatable; 'null-origin' admits clients "
        "sending none; default: any)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=MAX_MESSAGE_SIZE,
        help="largest frame in bytes, larger ones close with 1009 (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="messages per second per client after the burst, 0 = unlimited (default: %(default)s)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=1000,
        help="messages a client may send at once (default: %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=2**20,
        help="unsent bytes after which a client that does not read is "
        "disconnected (default: %(default)s)",
    )
    parser.add_argument("--max-room-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--max-rooms", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument("--max-clients", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="ping clients silent this long, 0 = never (default: %(default)s)",
    )
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=20.0,
        help="then drop them after this long (default: %(default)s)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not serve GET /metrics")
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share rooms with other server processes through Redis, e.g. "
        "redis://127.0.0.1:6379/0 (needs the 'redis' extra)",
    )
    parser.add_argument(
        "--redis-prefix",
        default="rtclab:signal",
        help="Redis key and channel prefix: servers sharing it share rooms (default: %(default)s)",
    )


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`SignalingServer` keyword arguments from :func:`add_server_arguments`' options."""
    room_tokens: dict[str, str] = {}
    for item in args.room_token:
        room, sep, secret = item.partition("=")
        if not sep or not room or not secret:
            raise SystemExit(f"--room-token wants ROOM=TOKEN, not {item!r}")
        room_tokens[room] = secret
    origins = None
    if args.origin is not None:
        origins = [None if o == "null-origin" else o for o in args.origin]
    return {
        "token": args.token or _env_token(),
        "room_tokens": room_tokens,
        "origins": origins,
        "max_message_size": args.max_message_size,
        "rate": args.rate or None,
        "burst": args.burst,
        "max_queue": args.max_queue,
        "max_room_size": args.max_room_size or None,
        "max_rooms": args.max_rooms or None,
        "max_clients": args.max_clients or None,
        "ping_interval": args.ping_interval or None,
        "ping_timeout": args.ping_timeout,
        "metrics_path": None if args.no_metrics else "/metrics",
        "redis_url": args.redis,
        "redis_prefix": args.redis_prefix,
    }


def serve_main(
    host: str,
    port: int,
    path: str = "/signal",
    compression: bool = False,
    client: bool = False,
    **options: Any,
) -> int:
    """Run a server in the foreground until SIGINT/SIGTERM (for the CLI); returns the exit code.

    ``options`` are :class:`SignalingServer` keyword arguments. Blocking (it owns its event
    loop): never call it from a notebook; there, use ``await SignalingServer().start()``.
    ``client=True`` also serves the browser client at ``/`` (:func:`rtclab.web.serve_client`).
    """
    import signal
    import sys

    async def run() -> None:
        server = SignalingServer(host, port, path, "deflate" if compression else None, **options)
        if client:
            from ..web import serve_client

            serve_client(server)
        url = await server.start()
        print(f"rtclab signaling server listening on {url}", flush=True)
        if client:
            print(f"browser client: http://{host}:{server.port}/?room=lab&user=NAME", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stopping.set)
            except (NotImplementedError, RuntimeError):  # not the main thread / Windows
                pass
        try:
            await stopping.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"rtclab signaling server: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. the redis extra is missing, or Redis is unreachable
        print(f"rtclab signaling server: {exc}", file=sys.stderr)
        return 1
    return 0
