"""WebSocket signaling server: the asyncio adapter around :class:`~.hub.Hub`.

The hub decides (rooms, identities, rate, caps) and returns an :class:`~.hub.Outcome`;
this module carries it out: writes the deliveries, reports the events to listeners, the
log and the cluster, and closes what the hub closes. Connections (:mod:`.connection`) do
the WebSocket I/O. On the relay path, with no observer registered, a message costs one
hub call and one queued write; relayed frames are spliced, not re-serialised (see
:mod:`.protocol`), and coalesced into one write per recipient and loop iteration.

What needs the socket or a timer stays here: the bound on unsent bytes (checked once per
flush), and liveness (:mod:`.liveness`): pings and idle reaping from one periodic sweep,
not a timer per connection, and a challenge to the holder of a contested seat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any, Final, Literal

from websockets.extensions.permessage_deflate import enable_server_permessage_deflate

from .cluster import RedisCluster
from .connection import Connection, ConnectionHooks
from .http import HttpHandler, Request, Response, header, http_response
from .hub import (
    Connected,
    Contested,
    Hub,
    Joined,
    JoinRequested,
    Left,
    Limits,
    Outcome,
    Recipient,
    Refused,
    Reported,
)
from .liveness import Liveness
from .metrics import CONTENT_TYPE, render_prometheus
from .observers import EventListener, Listener, Observers, StatsListener
from .protocol import MAX_MESSAGE_SIZE, ErrorCode, ErrorMessage, parse
from .rules import credential_from_request, origin_allowed, token_matches

__all__ = [
    "EventListener",
    "HttpHandler",
    "Listener",
    "SignalingServer",
    "StatsListener",
    "http_response",
]

logger = logging.getLogger("rtclab.signaling")

_monotonic: Final = time.monotonic
_SHUTDOWN: Final = ErrorMessage("server-shutdown", "the server is shutting down").encode()
# Refusals a flood can cause, logged at DEBUG so that -v stays readable under abuse.
_QUIET_REFUSALS: Final = frozenset(("rate-limited",))


class SignalingServer(Observers, Liveness):
    """The signaling server, run inside an already running event loop (e.g. a Jupyter kernel).

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). Compression is
    off by default: signaling frames are small and permessage-deflate costs CPU and memory
    per connection; pass ``compression="deflate"`` to accept it when a client offers it.

    Rules (every refusal is an ``error`` message with a ``code``, counted in :meth:`metrics`
    and logged at INFO, ``rate-limited`` at DEBUG):

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
        super().__init__()
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
        self.limits = Limits(
            max_message_size=max_message_size, max_room_size=max_room_size, max_rooms=max_rooms,
            max_clients=max_clients, token=token, room_tokens=dict(room_tokens or {}), rate=rate,
            burst=burst,
        )  # fmt: skip
        """What the hub admits: sizes, caps, tokens and the rate limit."""
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self._hub: Hub[Recipient] = Hub(self.limits)
        self._hooks = ConnectionHooks(
            extensions=list(enable_server_permessage_deflate(None)) if compression else None,
            max_size=max_message_size,
            max_queue=max_queue,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            on_request=self._on_request,
            on_open=self._on_open,
            on_message=self._on_message,
            on_too_large=self._on_too_large,
            on_dirty=self._mark_dirty,
            on_slow=self._slow_consumer,
            on_lost=self._on_lost,
        )
        self._conns = self._hooks.conns
        self._dirty: list[Connection] = []
        self._flush_scheduled = False
        self._careful = False  # listeners or a cluster: take the parse-then-handle path
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._cluster: RedisCluster | None = None
        self._pending: dict[Recipient, list[bytes]] = {}  # held while a cluster join settles
        self._counter = 0
        self._received = 0
        self.connections_total = 0
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

    def _metrics_route(self, request: Request) -> Response:
        """Prometheus text; behind the server token when there is one (room names stay
        private, but counts are still nobody else's business)."""
        token = self.limits.token
        if token is not None and not token_matches(
            credential_from_request(request.path, header(request.headers, "Authorization")),
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

    # connection settings live once, in the hooks every connection reads
    @property
    def max_queue(self) -> int:
        """Unsent bytes after which a client that does not read is disconnected."""
        return self._hooks.max_queue

    @property
    def open_timeout(self) -> float:
        return self._hooks.open_timeout

    @property
    def close_timeout(self) -> float:
        return self._hooks.close_timeout

    async def start(self) -> str:
        """Listen and return the URL. Never blocks the loop; port 0 picks a free port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        if self.redis_url is not None:
            self._cluster = RedisCluster(
                _ClusterPort(self), self.redis_url, prefix=self.redis_prefix
            )
            await self._cluster.start()
            self._hub.registry = True
        self._listeners_changed()
        try:
            self._server = await self._loop.create_server(
                self._new_connection, self.host, self.port
            )
        except BaseException:
            await self._stop_cluster()
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
        await self._stop_cluster()
        await server.wait_closed()
        logger.info("signaling server on %s stopped", self.url)

    async def _stop_cluster(self) -> None:
        if self._cluster is not None:
            await self._cluster.stop()
            self._cluster = None
            self._hub.registry = False
            self._listeners_changed()

    async def __aenter__(self) -> SignalingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- observation

    def metrics(self) -> dict[str, Any]:
        """Counters since construction (gauges: now), as :func:`.metrics.render_prometheus`
        and ``GET /metrics`` show them."""
        hub = self._hub
        hooks = self._hooks
        return {
            "clients": hub.connections,
            "rooms": hub.room_count,
            "connections_total": self.connections_total,
            "messages_received_total": self._received,
            "messages_relayed_total": hub.relayed,
            "messages_refused_total": dict(hub.errors),
            "messages_dropped_total": hooks.dropped,
            "bytes_in_total": hooks.bytes_in,
            "bytes_out_total": hooks.bytes_out,
            "disconnects_total": dict(self.disconnects),
        }

    @property
    def stats(self) -> dict[str, Any]:
        """Short summary of :meth:`metrics` (kept for notebooks written against the first
        version)."""
        m = self.metrics()
        return {
            "clients": m["clients"],
            "rooms": m["rooms"],
            "messages_received": m["messages_received_total"],
            "messages_relayed": m["messages_relayed_total"],
            "errors": m["messages_refused_total"],
        }

    def rooms(self) -> dict[str, list[str]]:
        """Snapshot: roomId -> userIds (with a cluster: members on every process)."""
        return self._hub.rooms()

    # ---------------------------------------------------------------- connection hooks

    def _new_connection(self) -> Connection:
        self._counter += 1
        return Connection(self._hooks, self._counter)

    def _listeners_changed(self) -> None:
        self._careful = bool(self._listeners or self._cluster)

    def _on_request(self, conn: Connection, request: Request) -> Response | None:
        """Answer a plain HTTP request, refuse a foreign Origin, or upgrade (``None``)."""
        path = request.path.partition("?")[0]
        if path != self.path:
            handler = self._routes.get(path)
            if handler is None:
                return http_response(404, "Not Found\n")
            try:
                return handler(request)
            except Exception:
                logger.exception("HTTP handler for %s failed", path)
                return http_response(500, "internal server error\n")
        if not origin_allowed(header(request.headers, "Origin"), self.origins):
            # A plain 403 rather than an open socket: a page from a foreign origin gets
            # nothing to talk to. The body still says why, as every refusal does.
            out = self._hub.refuse(conn, "forbidden-origin", "this Origin is not allowed")
            self._report(out)
            return http_response(403, out.deliveries[0][1].encode(), "application/json")
        return None

    def _on_open(self, conn: Connection, request: Request) -> None:
        credential = credential_from_request(request.path, header(request.headers, "Authorization"))
        out = self._hub.connect(conn, conn.last_seen, credential)
        if not out.closes:
            self.connections_total += 1
        self._apply(out)

    def _on_too_large(self, conn: Connection) -> None:
        text = f"message exceeds {self.limits.max_message_size} bytes"
        self._apply(self._hub.refuse(conn, "message-too-large", text))

    def _on_lost(self, conn: Connection) -> None:
        self._pending.pop(conn, None)
        try:
            self._apply(self._hub.disconnect(conn))
        except Exception:
            logger.exception("%s: error while disconnecting", conn.label)
        if not self._conns and self._idle is not None:
            self._idle.set()

    def _on_message(self, conn: Connection, data: bytes, now: float) -> None:
        self._received += 1
        if not conn.writable:  # frames pipelined before the upgrade, or after our close
            return
        if self._careful:
            self._observed(conn, data, now)
            return
        try:  # the relay path: the hub call and the writes, inlined
            out = self._hub.receive_data(conn, data, now)
            for target, message in out.deliveries:
                target.send(message.encode())
            if out.events:
                self._report(out)
        except Exception:
            self._internal_error(conn)

    def _observed(self, conn: Connection, data: bytes, now: float) -> None:
        """The path with message listeners or a cluster: parse here, so listeners see the
        message, and hold messages while a cluster join is settled (keeps their order)."""
        try:
            refusal = self._hub.admit(conn, now)
            if refusal is not None:
                self._apply(refusal)
                return
            pending = self._pending.get(conn)
            if pending is not None:
                pending.append(data)
                return
            self._handle(conn, data)
        except Exception:
            self._internal_error(conn)

    def _handle(self, conn: Recipient, data: bytes) -> None:
        message = parse(data, max_size=self.limits.max_message_size)
        if self._listeners:
            self._notify("in", self._who(conn), message.to_dict())
        self._apply(self._hub.receive(conn, message))

    def _internal_error(self, conn: Connection) -> None:
        logger.exception("%s: error while handling a message", conn.label)
        self._apply(self._hub.refuse(conn, "internal-error", "internal server error"))

    # ---------------------------------------------------------------- carrying out outcomes

    def _apply(self, out: Outcome[Recipient]) -> None:
        """Deliver, then report the events, then close: the order the hub's outcome has."""
        if self._listeners:
            for target, message in out.deliveries:
                self._notify("out", self._who(target), message.to_dict())
        for target, message in out.deliveries:
            target.send(message.encode())
        if out.events:
            self._report(out)

    def _report(self, out: Outcome[Recipient]) -> None:
        """Events to the log, the listeners and the cluster; then the closes."""
        listening = bool(self._event_listeners)
        for event in out.events:
            if isinstance(event, Refused):
                who = self._who(event.conn)
                level = logging.DEBUG if event.code in _QUIET_REFUSALS else logging.INFO
                logger.log(level, "%s refused: %s (%s)", who, event.code, event.message)
                if listening:
                    value = {"code": event.code, "message": event.message}
                    self._event(who, "signaling-refused", value)
            elif isinstance(event, Joined):
                logger.info(
                    "%s joined room %r as %r", event.conn.label, event.room_id, event.user_id
                )
                if listening:
                    self._event(event.user_id, "signaling-joined", {"room": event.room_id})
            elif isinstance(event, Left):
                logger.info("%r left room %r", event.user_id, event.room_id)
                if listening:
                    self._event(event.user_id, "signaling-left", {"room": event.room_id})
                if self._cluster is not None:
                    self._cluster.leave(event.room_id, event.user_id)
            elif isinstance(event, Connected):
                logger.debug("%s connected", event.conn.label)
                if listening:
                    self._event(event.conn.label, "signaling-connected", None)
            elif isinstance(event, Reported):
                self._on_stats(event.user_id, event.room_id, event.rows)
            elif isinstance(event, Contested):
                self._challenge(event.conn)
            elif isinstance(event, JoinRequested) and self._cluster is not None:
                self._pending[event.conn] = []
                self._cluster.join(event.conn, event.room_id, event.user_id)
        for close in out.closes:
            if isinstance(close.conn, Connection):
                close.conn.close(close.code, close.reason)

    def _slow_consumer(self, conn: Connection) -> None:
        """``conn`` stopped reading: its unsent bytes passed :attr:`max_queue`. Dropping
        it (its room hears ``peer-left``) is the only bound that holds against a client
        that never reads; a close frame would only queue behind the backlog."""
        logger.warning(
            "%s: slow consumer, %d bytes unsent: disconnected",
            conn.label,
            conn.transport.get_write_buffer_size() if conn.transport else 0,
        )
        self.disconnects["slow-consumer"] += 1
        if self._event_listeners:
            self._event(self._who(conn), "signaling-slow-consumer", None)
        conn.abort()

    def _who(self, conn: Recipient) -> str:
        return self._hub.user_of(conn) or conn.label

    def _mark_dirty(self, conn: Connection) -> None:
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


class _ClusterPort:
    """The server as its :class:`~.cluster.RedisCluster` sees it (:class:`~.cluster.ClusterHost`):
    the registry's answers and other processes' members go through the hub like any input."""

    __slots__ = ("server",)

    def __init__(self, server: SignalingServer) -> None:
        self.server = server

    @property
    def max_room_size(self) -> int | None:
        return self.server.limits.max_room_size

    def member(self, room_id: str, user_id: str) -> Recipient | None:
        return self.server._hub.member(room_id, user_id)

    def add_remote(self, member: Recipient, room_id: str, user_id: str) -> None:
        self.server._apply(self.server._hub.add_remote(member, room_id, user_id))

    def remove_remote(self, room_id: str, user_id: str) -> None:
        self.server._apply(self.server._hub.remove_remote(room_id, user_id))

    def deliver(self, room_id: str, user_id: str, frame: bytes) -> None:
        hub = self.server._hub
        target = hub.member(room_id, user_id)
        if target is None or not hub.is_local(target):
            self.server._hooks.dropped += 1  # it left while the frame was on its way
            return
        target.send(frame)  # counted as relayed by the sender's process

    def seated(self, conn: Recipient, room_id: str, user_id: str) -> None:
        """The registry seated ``conn``: tell it and its local room, then replay what it
        sent meanwhile."""
        server = self.server
        pending = server._pending.pop(conn, None)
        if not server._hub.is_local(conn):  # it went away meanwhile: undo the seat
            if server._cluster is not None:
                server._cluster.leave(room_id, user_id)
            return
        server._apply(server._hub.seat(conn, room_id, user_id))
        self._replay(conn, pending)

    def refused(self, conn: Recipient, code: ErrorCode, text: str) -> None:
        server = self.server
        pending = server._pending.pop(conn, None)
        if server._hub.is_local(conn):
            server._apply(server._hub.refuse(conn, code, text))
            self._replay(conn, pending)

    def _replay(self, conn: Recipient, pending: list[bytes] | None) -> None:
        server = self.server
        for i, data in enumerate(pending or ()):
            held = server._pending.get(conn)
            if held is not None:  # another join went to the registry: wait again
                held.extend((pending or [])[i:])
                return
            try:
                server._handle(conn, data)
            except Exception:
                logger.exception("%s: error while handling a message", conn.label)
                server._apply(server._hub.refuse(conn, "internal-error", "internal server error"))
