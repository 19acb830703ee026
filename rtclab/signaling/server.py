"""WebSocket signaling server: a thin asyncio adapter around :class:`~.rooms.Rooms`.

It drives websockets' sans-I/O :class:`~websockets.server.ServerProtocol` from a plain
:class:`asyncio.Protocol` instead of using ``websockets.asyncio.server``: that layer spends
a task, futures and a message queue on every connection and message, which halved
throughput against a Node ``ws`` relay. Here a frame is handled synchronously in
``data_received``, relayed frames are built by splicing (see :mod:`.protocol`), and each
recipient's frames are coalesced into one write per event-loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal

from websockets.datastructures import Headers
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, SEND_EOF
from websockets.server import ServerProtocol

from .protocol import MAX_MESSAGE_SIZE, ErrorMessage, ServerMessage, parse
from .rooms import Rooms

__all__ = ["HttpHandler", "Listener", "SignalingServer", "http_response", "serve_main"]

logger = logging.getLogger("rtclab.signaling")
_ws_logger = logging.getLogger("rtclab.signaling.ws")

HttpHandler = Callable[[Request], Response]
"""A plain-HTTP route: gets the parsed request, returns the whole response (build it with
:func:`http_response`). Runs synchronously in the loop: keep it quick."""

Listener = Callable[[str, str, dict[str, Any]], None]
"""``listener(direction, who, message)``: direction is ``"in"`` or ``"out"``, ``who`` the
sender's / recipient's userId (``"conn-N"`` before it joined)."""

_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY
_CONT: Final = Opcode.CONT
_HEAD16: Final = struct.Struct("!BBH").pack
_HEAD64: Final = struct.Struct("!BBQ").pack
_INTERNAL_ERROR: Final = ErrorMessage("internal-error", "internal server error")


def http_response(
    status: int,
    body: bytes | str = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> Response:
    """A complete HTTP/1.1 response for an :data:`HttpHandler` (connection closes after it)."""
    data = body.encode() if isinstance(body, str) else body
    reasons = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
               403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               500: "Internal Server Error", 503: "Service Unavailable"}
    all_headers = Headers()
    all_headers["Content-Type"] = content_type
    all_headers["Content-Length"] = str(len(data))
    all_headers["Connection"] = "close"
    all_headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        all_headers[name] = value
    return Response(status, reasons.get(status, "Unknown"), all_headers, data)


def _text_header(length: int) -> bytes:
    """Header of an unmasked, unfragmented, uncompressed text frame (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return _HEAD16(0x81, 126, length)
    return _HEAD64(0x81, 127, length)


class _Connection(asyncio.Protocol):
    """One TCP connection: HTTP upgrade, then WebSocket frames in, frames out."""

    __slots__ = (
        "fast",
        "frags",
        "label",
        "out",
        "proto",
        "server",
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
            max_size=server._frame_limit,
            logger=_ws_logger,
        )
        self.out: list[bytes] = []  # frames waiting for the next flush
        self.want_eof = False
        self.writable = False  # True from the 101 response until our close frame is queued
        self.fast = False  # no extension negotiated: build frames ourselves
        self.frags: list[bytes] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._conns.add(self)
        self._set_timer(self.server.open_timeout)

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        try:
            proto.receive_data(data)
        except EOFError:  # data after EOF: nothing to do
            return
        events = proto.events_received()
        ctrl = proto.data_to_send()  # pongs, close echo: they go after our replies
        server = self.server
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _TEXT or opcode is _BINARY:
                    # bytes() of a bytes object is that object: no copy
                    if event.fin:
                        server._on_message(self, bytes(event.data))
                    else:
                        self.frags = [bytes(event.data)]
                elif opcode is _CONT and self.frags is not None:
                    self.frags.append(bytes(event.data))
                    if event.fin:
                        payload = b"".join(self.frags)
                        self.frags = None
                        server._on_message(self, payload)
            elif type(event) is Request:
                self._handshake(event)
        if ctrl:
            self._queue_proto(ctrl)
        if proto.state is not OPEN:
            self.writable = False
            if proto.close_expected():
                self._set_timer(server.close_timeout)

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
        """Queue one text message; dropped if the connection is closing."""
        if not self.writable:
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
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            if transport.get_write_buffer_size() > self.server.max_buffer:
                logger.warning("%s: slow consumer, %d bytes unsent: dropped",
                               self.label, transport.get_write_buffer_size())
                transport.abort()
                return
        if self.want_eof:
            self.want_eof = False
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

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
        path = request.path.partition("?")[0]
        if path != self.server.path:
            response = self.server._http(request, path)
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
            self.server._on_open(self)


class SignalingServer:
    """The signaling server, run inside an already running event loop (e.g. a Jupyter kernel).

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). Compression is
    off by default: signaling frames are small and permessage-deflate costs CPU and memory
    per connection; pass ``compression="deflate"`` to accept it when a client offers it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/signal",
        compression: Literal["deflate"] | None = None,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_buffer: int = 16 * 2**20,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        if compression not in (None, "deflate"):
            raise ValueError(f"compression must be None or 'deflate', not {compression!r}")
        self.host = host
        self.port = port
        self.path = path
        self.compression = compression
        self.max_buffer = max_buffer
        """Unsent bytes after which a client that does not read is disconnected."""
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self._extensions: list[ServerExtensionFactory] | None = (
            list(enable_server_permessage_deflate(None)) if compression else None
        )
        # Frames above max_message_size get an error reply and the connection stays open;
        # only far larger ones make websockets close it (1009).
        self._frame_limit = max(4 * max_message_size, 2**20)
        self._rooms: Rooms[_Connection] = Rooms(max_message_size=max_message_size)
        self._conns: set[_Connection] = set()  # every TCP connection, upgraded or not
        self._dirty: list[_Connection] = []
        self._flush_scheduled = False
        self._listeners: list[Listener] = []
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None
        self._counter = 0
        self._received = 0
        self._routes: dict[str, HttpHandler] = {}

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
        self._server = await self._loop.create_server(self._new_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("signaling server listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Close every client (1001 going away), free the port; :meth:`start` works again."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        for conn in list(self._conns):
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
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def stats(self) -> dict[str, Any]:
        rooms = self._rooms
        return {
            "clients": rooms.connections,
            "rooms": rooms.room_count,
            "messages_received": self._received,
            "messages_relayed": rooms.relayed,
            "errors": dict(rooms.errors),
        }

    def rooms(self) -> dict[str, list[str]]:
        """Snapshot: roomId -> userIds."""
        return self._rooms.rooms()

    # ---------------------------------------------------------------- internals

    def _new_connection(self) -> _Connection:
        self._counter += 1
        return _Connection(self, self._counter)

    def _on_open(self, conn: _Connection) -> None:
        self._rooms.connect(conn)

    def _on_lost(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        try:
            out = self._rooms.disconnect(conn)
            if out:
                self._deliver(out)
        except Exception:
            logger.exception("%s: error while disconnecting", conn.label)
        if not self._conns and self._idle is not None:
            self._idle.set()

    def _on_message(self, conn: _Connection, data: bytes) -> None:
        self._received += 1
        if not conn.writable:  # frames pipelined before the upgrade, or after our close
            return
        try:
            if self._listeners:
                message = parse(data, max_size=self._rooms.max_message_size)
                self._notify("in", self._who(conn), message.to_dict())
                out = self._rooms.receive(conn, message)
            else:
                out = self._rooms.receive_data(conn, data)
            self._deliver(out)
        except Exception:
            logger.exception("%s: error while handling a message", conn.label)
            self._rooms.errors["internal-error"] += 1
            conn.send(_INTERNAL_ERROR.encode())

    def _deliver(self, out: list[tuple[_Connection, ServerMessage]]) -> None:
        if self._listeners:
            for target, message in out:
                self._notify("out", self._who(target), message.to_dict())
        for target, message in out:
            target.send(message.encode())

    def _who(self, conn: _Connection) -> str:
        return self._rooms.user_of(conn) or conn.label

    def _notify(self, direction: str, who: str, message: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(direction, who, message)
            except Exception:
                logger.exception("signaling listener %r failed", listener)

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


def serve_main(host: str, port: int, path: str = "/signal", compression: bool = False) -> int:
    """Run a server in the foreground until SIGINT/SIGTERM (for the CLI); returns the exit code.

    Blocking (it owns its event loop): never call it from a notebook; there, use
    ``await SignalingServer().start()``.
    """
    import signal
    import sys

    async def run() -> None:
        server = SignalingServer(host, port, path, "deflate" if compression else None)
        url = await server.start()
        print(f"rtclab signaling server listening on {url}", flush=True)
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
    return 0
