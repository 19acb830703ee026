"""The replaced ``create_datagram_endpoint`` and ``create_connection`` on the running loop:
how aioice's sockets can land on an emulated network.

aioice opens every UDP socket (host candidates, TURN over UDP) through
``loop.create_datagram_endpoint`` and its TURN-over-TCP/TLS connections through
``loop.create_connection`` of the running loop, so a wrapper on that *loop object* (not the
class: other loops stay untouched) can hand out a fake transport while real addresses pass
through. :class:`StartTlsTransport` holds the two private names asyncio's ``start_tls``
needs from a transport it upgrades.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "DatagramRoute",
    "StartTlsTransport",
    "StreamRoute",
    "route_datagram_endpoints",
    "route_stream_connections",
]

#: ``(protocol_factory, local_addr, remote_addr, kwargs) -> (transport, protocol)``, or
#: ``None`` to let the loop open a real socket.
DatagramRoute = Callable[
    [Callable[[], asyncio.DatagramProtocol], Any, Any, dict[str, Any]],
    "tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol] | None",
]


def route_datagram_endpoints(loop: asyncio.AbstractEventLoop, route: DatagramRoute) -> None:
    """Ask ``route`` first on every ``loop.create_datagram_endpoint`` (once per loop; a second
    call replaces the route). Raises RuntimeError for a loop that takes no attributes."""
    if getattr(loop, "_rtclab_datagram_route", None) is not None:
        loop._rtclab_datagram_route = route  # type: ignore[attr-defined]
        return
    original = loop.create_datagram_endpoint

    async def create_datagram_endpoint(
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: Any = None,
        remote_addr: Any = None,
        **kwargs: Any,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        current: DatagramRoute = loop._rtclab_datagram_route  # type: ignore[attr-defined]
        opened = current(protocol_factory, local_addr, remote_addr, kwargs)
        if opened is not None:
            return opened
        return await original(  # type: ignore[no-any-return]
            protocol_factory, local_addr=local_addr, remote_addr=remote_addr, **kwargs
        )

    try:
        loop._rtclab_datagram_route = route  # type: ignore[attr-defined]
        loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign,assignment]
    except AttributeError:  # e.g. uvloop: its loop takes no attributes
        raise RuntimeError(
            f"the emulated network needs an asyncio event loop it can hook, not {type(loop)} "
            "(use the default asyncio loop, as Jupyter does)"
        ) from None


#: ``(protocol_factory, host, port, kwargs) -> (transport, protocol)``, or ``None`` to let the
#: loop open a real connection.
StreamRoute = Callable[
    [Callable[[], asyncio.BaseProtocol], Any, Any, dict[str, Any]],
    "Awaitable[tuple[asyncio.Transport, asyncio.BaseProtocol] | None]",
]


def route_stream_connections(loop: asyncio.AbstractEventLoop, route: StreamRoute) -> None:
    """Ask ``route`` first on every ``loop.create_connection`` (as
    :func:`route_datagram_endpoints` does for UDP)."""
    if getattr(loop, "_rtclab_stream_route", None) is not None:
        loop._rtclab_stream_route = route  # type: ignore[attr-defined]
        return
    original = loop.create_connection

    async def create_connection(
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: Any = None,
        port: Any = None,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        current: StreamRoute = loop._rtclab_stream_route  # type: ignore[attr-defined]
        opened = await current(protocol_factory, host, port, kwargs)
        if opened is not None:
            return opened
        return await original(protocol_factory, host, port, **kwargs)  # type: ignore[no-any-return]

    try:
        loop._rtclab_stream_route = route  # type: ignore[attr-defined]
        loop.create_connection = create_connection  # type: ignore[method-assign,assignment]
    except AttributeError:
        raise RuntimeError(
            f"the emulated network needs an asyncio event loop it can hook, not {type(loop)} "
            "(use the default asyncio loop, as Jupyter does)"
        ) from None


class StartTlsTransport(asyncio.Transport):
    """A transport ``loop.start_tls`` accepts: asyncio checks ``_start_tls_compatible``
    before upgrading one and calls ``_force_close`` when the TLS layer fails (Python 3.11+);
    subclasses implement ``abort``."""

    _start_tls_compatible = True

    def _force_close(self, exc: BaseException | None) -> None:
        self.abort()
