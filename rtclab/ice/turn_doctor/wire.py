"""One STUN/TURN client flow for the doctor: a UDP socket or a TCP (then maybe TLS) stream,
request/response matching by transaction id, and a queue of relayed data.

aioice's TURN client hides every answer behind retries and one ``ConnectionError``; the
doctor needs each answer as it came (the 401 and its realm, a 438, a 508), so it speaks
STUN itself with aioice's codec (:mod:`aioice.stun`) over this small transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from aioice import stun

__all__ = ["StunLink"]

#: UDP retransmission schedule (seconds after the first send), inside a step's timeout.
RETRANSMIT = (0.25, 0.5, 1.0, 2.0)


class StunLink(asyncio.DatagramProtocol, asyncio.Protocol):
    """A client flow to one server address; :meth:`request` sends and awaits the answer."""

    def __init__(self, transport_kind: str) -> None:
        self.kind = transport_kind  # "udp" | "tcp" | "tls"
        self.transport: asyncio.BaseTransport | None = None
        self.pending: dict[bytes, asyncio.Future[stun.Message]] = {}
        self.received: asyncio.Queue[tuple[tuple[str, int], bytes]] = asyncio.Queue()
        self.channels: dict[int, tuple[str, int]] = {}
        self.error: Exception | None = None
        self._buffer = b""

    # ---------------------------------------------------------------- opening

    @classmethod
    async def open(cls, kind: str, host: str, port: int) -> StunLink:
        """Open a UDP socket "connected" to the server, or a TCP connection (not yet TLS)."""
        loop = asyncio.get_running_loop()
        link = cls(kind)
        if kind == "udp":
            await loop.create_datagram_endpoint(lambda: link, remote_addr=(host, port))
        else:
            await loop.create_connection(lambda: link, host, port)
        return link

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> ssl.SSLObject:
        """Upgrade the TCP connection to TLS; the certificate checks raise ssl errors."""
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        tls = await loop.start_tls(
            self.transport,  # type: ignore[arg-type]
            self,
            context,
            server_hostname=server_hostname,
        )
        assert tls is not None
        self.transport = tls
        ssl_object = tls.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        return ssl_object

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        for future in self.pending.values():
            if not future.done():
                future.cancel()

    # ---------------------------------------------------------------- sending

    def send_bytes(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the connection to the server is closed")
        if self.kind == "udp":
            self.transport.sendto(data)  # type: ignore[attr-defined]
        else:
            self.transport.write(data)  # type: ignore[attr-defined]

    def send(self, message: stun.Message) -> None:
        self.send_bytes(bytes(message))

    async def request(self, message: stun.Message) -> stun.Message:
        """Send ``message`` and return the response or error response (retransmitted over
        UDP; the caller bounds the wait). A socket error (ICMP port unreachable, a reset)
        is raised as the ``OSError`` it is."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[stun.Message] = loop.create_future()
        self.pending[message.transaction_id] = future
        data = bytes(message)
        try:
            self.send_bytes(data)
            if self.kind != "udp":
                return await future
            began = loop.time()
            for at in RETRANSMIT:
                with contextlib.suppress(asyncio.TimeoutError):
                    return await asyncio.wait_for(
                        asyncio.shield(future), max(0.0, began + at - loop.time())
                    )
                self.send_bytes(data)
            return await future
        finally:
            self.pending.pop(message.transaction_id, None)

    # ---------------------------------------------------------------- receiving

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def error_received(self, exc: Exception) -> None:
        self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        for future in self.pending.values():
            if not future.done():
                future.set_exception(exc)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._dispatch(data)

    def data_received(self, data: bytes) -> None:
        """Split a stream into STUN messages and ChannelData (padded to 4 over TCP)."""
        self._buffer += data
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[2:4], "big")
            if self._buffer[0] & 0xC0 == 0x40:
                size = 4 + length + (-length % 4)
            else:
                size = stun.HEADER_LENGTH + length
            if len(self._buffer) < size:
                return
            frame, self._buffer = self._buffer[:size], self._buffer[size:]
            self._dispatch(frame)

    def _dispatch(self, data: bytes) -> None:
        if len(data) >= 4 and data[0] & 0xC0 == 0x40:
            channel = int.from_bytes(data[:2], "big")
            length = int.from_bytes(data[2:4], "big")
            peer = self.channels.get(channel)
            if peer is not None:
                self.received.put_nowait((peer, data[4 : 4 + length]))
            return
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            future = self.pending.get(message.transaction_id)
            if future is not None and not future.done():
                future.set_result(message)
        elif (
            message.message_method == stun.Method.DATA
            and message.message_class == stun.Class.INDICATION
        ):
            peer = message.attributes.get("XOR-PEER-ADDRESS")
            payload = message.attributes.get("DATA")
            if peer is not None and payload is not None:
                self.received.put_nowait((tuple(peer), payload))  # type: ignore[arg-type]
