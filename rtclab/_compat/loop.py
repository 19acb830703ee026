"""The replaced ``create_datagram_endpoint`` on the running loop: how aioice's UDP sockets
can land on an emulated network.

aioice opens every UDP socket (host candidates, TURN over UDP) through
``loop.create_datagram_endpoint`` of the running loop, so a wrapper on that *loop object*
(not the class: other loops stay untouched) can hand out a fake transport while real
addresses pass through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["DatagramRoute", "route_datagram_endpoints"]

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
