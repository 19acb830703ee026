"""One signaling client's TCP connection: HTTP upgrade, then WebSocket frames in, frames out.

It drives websockets' sans-I/O :class:`~websockets.server.ServerProtocol` from a plain
:class:`asyncio.Protocol` instead of using ``websockets.asyncio.server``: that layer spends
a task, futures and a message queue on every connection and message, which halved
throughput against a Node ``ws`` relay. Here a message is handed on synchronously from
``data_received``; once upgraded, frames are split by :func:`.frames.split_frames` and only
the unusual ones reach websockets. Outgoing frames are queued per connection and written
once per event-loop iteration. What the server decides (routes, admission, the messages
themselves) goes through :class:`ConnectionHooks`, so this module knows nothing of rooms.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from websockets.exceptions import PayloadTooBig
from websockets.extensions.base import ServerExtensionFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, SEND_EOF
from websockets.server import ServerProtocol

from .frames import split_frames, text_header

__all__ = ["Connection", "ConnectionHooks"]

_ws_logger = logging.getLogger("rtclab.signaling.ws")

_TEXT: Final = Opcode.TEXT
_BINARY: Final = Opcode.BINARY
_CONT: Final = Opcode.CONT
_monotonic: Final = time.monotonic


@dataclass(slots=True, kw_only=True)
class ConnectionHooks:
    """What every connection of one server shares: settings, counters and the server's
    callbacks. Built once by the server; a connection reaches it in one attribute load."""

    extensions: list[ServerExtensionFactory] | None
    max_size: int
    """Largest message: longer frames close with 1009 before their payload is read."""
    max_queue: int
    """Unsent bytes after which :attr:`on_slow` is called."""
    open_timeout: float
    close_timeout: float
    on_request: Callable[[Connection, Request], Response | None]
    """``(conn, request)`` -> a response to send instead of upgrading, or ``None``."""
    on_open: Callable[[Connection, Request], None]
    """``(conn, request)`` after the 101 response went out."""
    on_message: Callable[[Connection, bytes, float], None]
    """``(conn, payload, now)`` for each whole text/binary message."""
    on_too_large: Callable[[Connection], None]
    """``(conn)``: websockets refused an oversized message (close 1009 follows)."""
    on_dirty: Callable[[Connection], None]
    """``(conn)``: it has frames queued; call its :meth:`~Connection.flush` soon."""
    on_slow: Callable[[Connection], None]
    """``(conn)``: its unsent bytes passed :attr:`max_queue`."""
    on_lost: Callable[[Connection], None]
    conns: set[Connection] = field(default_factory=set, init=False)
    """Every TCP connection, upgraded or not."""
    bytes_in: int = field(default=0, init=False)
    bytes_out: int = field(default=0, init=False)
    dropped: int = field(default=0, init=False)
    """Messages not sent because their recipient was closing."""


class Connection(asyncio.Protocol):
    """One TCP connection (made by the server's listening socket)."""

    __slots__ = (
        "fast",
        "fragmented",
        "frags",
        "hooks",
        "inbuf",
        "label",
        "last_ping",
        "last_seen",
        "out",
        "proto",
        "split",
        "timer",
        "transport",
        "want_eof",
        "writable",
    )

    def __init__(self, hooks: ConnectionHooks, number: int) -> None:
        self.hooks = hooks
        self.label = f"conn-{number}"
        self.transport: asyncio.Transport | None = None
        self.proto = ServerProtocol(
            extensions=hooks.extensions, max_size=hooks.max_size, logger=_ws_logger
        )
        self.out: list[bytes] = []  # frames waiting for the next flush
        self.want_eof = False
        self.writable = False  # True from the 101 response until our close frame is queued
        self.fast = False  # no extension negotiated: build frames ourselves
        self.frags: list[bytes] | None = None  # a fragmented message websockets is handing on
        self.timer: asyncio.TimerHandle | None = None
        self.last_seen = self.last_ping = _monotonic()
        self.split = False  # frames are split here, not by websockets (see _split)
        self.inbuf = b""  # the incomplete frame at the end of the last read (split mode)
        self.fragmented = False  # a fragmented message is in progress (split mode)

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.hooks.conns.add(self)
        self._set_timer(self.hooks.open_timeout)

    def data_received(self, data: bytes) -> None:
        self.hooks.bytes_in += len(data)
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
        """Hand whole messages on directly and every other frame to websockets whole."""
        if self.inbuf:
            data = self.inbuf + data
        items, self.inbuf, self.fragmented, stopped = split_frames(
            data, self.hooks.max_size, self.fragmented
        )
        on_message = self.hooks.on_message
        for item in items:
            if type(item) is bytes:
                on_message(self, item, now)
            else:
                self._feed(item, now)
                if self.proto.state is not OPEN:  # closing: websockets discards the rest
                    self.split = False
                    self.inbuf = b""
                    return
        if stopped:  # a frame websockets refuses from its header: it takes over
            self.split = False
            rest, self.inbuf = self.inbuf, b""
            self._feed(rest, now)

    def _feed(self, data: bytes, now: float) -> None:
        """Let websockets parse ``data`` (handshake, control frames, fragments, errors)."""
        proto = self.proto
        hooks = self.hooks
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
                        hooks.on_message(self, bytes(event.data), now)
                    else:
                        self.frags = [bytes(event.data)]
                elif opcode is _CONT and self.frags is not None:
                    self.frags.append(bytes(event.data))
                    if event.fin:
                        payload = b"".join(self.frags)
                        self.frags = None
                        hooks.on_message(self, payload, now)
            elif type(event) is Request:
                self._handshake(event)
        if proto.state is not OPEN:
            if self.writable and type(proto.parser_exc) is PayloadTooBig:
                # websockets refused the frame from its header (nothing buffered) and
                # queued close 1009; the server says why first, as for any refusal.
                hooks.on_too_large(self)
            self.writable = False
            if proto.close_expected():
                self._set_timer(hooks.close_timeout)
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
        self.hooks.conns.discard(self)
        self.hooks.on_lost(self)

    # ---------------------------------------------------------------- writing

    def send(self, payload: bytes) -> None:
        """Queue one text message; dropped (and counted) if the connection is closing."""
        if not self.writable:
            self.hooks.dropped += 1
            return
        if not self.out:
            self.hooks.on_dirty(self)
        if self.fast:
            n = len(payload)
            self.out.append(bytes((0x81, n)) if n < 126 else text_header(n))
            self.out.append(payload)
        elif self.proto.state is OPEN:
            self.proto.send_text(payload)
            self.out.extend(self.proto.data_to_send())

    def send_raw(self, frame: bytes) -> None:
        """Queue an already framed control frame (the server's pings)."""
        if self.writable:
            if not self.out:
                self.hooks.on_dirty(self)
            self.out.append(frame)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (or drop the connection if not upgraded yet)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.proto.state is OPEN:
            self.proto.send_close(code, reason)
            self._queue_proto(self.proto.data_to_send())
            self.writable = False
            self._set_timer(self.hooks.close_timeout)
        else:
            self.transport.close()

    def flush(self) -> None:
        """Write what is queued (one ``write``), then the EOF websockets asked for."""
        transport = self.transport
        out = self.out
        self.out = []
        if transport is None or transport.is_closing():
            return
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.hooks.bytes_out += len(data)
            transport.write(data)
            if transport.get_write_buffer_size() > self.hooks.max_queue:
                self.hooks.on_slow(self)
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
            self.hooks.on_dirty(self)
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
        response = self.hooks.on_request(self, request)
        if response is None:
            response = proto.accept(request)
        proto.send_response(response)
        self._queue_proto(proto.data_to_send())
        if response.status_code == 101:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.writable = True
            self.fast = not proto.extensions
            self.hooks.on_open(self, request)
