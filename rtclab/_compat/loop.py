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

    def make(original: Any) -> Any:
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

        return create_datagram_endpoint

    _route(loop, "create_datagram_endpoint", "_rtclab_datagram_route", route, make)


def _route(
    loop: asyncio.AbstractEventLoop,
    method: str,
    attribute: str,
    route: Any,
    make: Callable[[Any], Any],
) -> None:
    """Install ``make(loop.<method>)`` in place of ``loop.<method>`` and keep ``route`` in
    ``loop.<attribute>`` for it to ask; once installed, a later call only swaps the route."""
    if getattr(loop, attribute, None) is not None:
        setattr(loop, attribute, route)
        return
    replacement = make(getattr(loop, method))
    try:
        setattr(loop, attribute, route)
        setattr(loop, method, replacement)
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

    def make(original: Any) -> Any:
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

        return create_connection

    _route(loop, "create_connection", "_rtclab_stream_route", route, make)


class StartTlsTransport(asyncio.Transport):
    """A transport ``loop.start_tls`` accepts: asyncio checks ``_start_tls_compatible``
    before upgrading one and calls ``_force_close`` when the TLS layer fails (Python 3.11+);
    subclasses implement ``abort``."""

    _start_tls_compatible = True

    def _force_close(self, exc: BaseException | None) -> None:
        self.abort()
