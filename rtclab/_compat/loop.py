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
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["SocketRoute", "StartTlsTransport", "route_sockets"]

#: The loop methods :func:`route_sockets` replaces.
ROUTED_METHODS = ("create_datagram_endpoint", "create_connection")

#: ``(method, arguments) -> (transport, protocol)``, or ``None`` to let the loop open a real
#: socket. ``method`` is one of :data:`ROUTED_METHODS`; ``arguments`` are the call's,
#: by the names of asyncio's signature (``protocol_factory``, ``local_addr`` /
#: ``remote_addr`` or ``host`` / ``port``, and the keyword options given, e.g. ``ssl``).
SocketRoute = Callable[[str, dict[str, Any]], Awaitable[tuple[Any, Any] | None]]


def route_sockets(loop: asyncio.AbstractEventLoop, route: SocketRoute) -> None:
    """Ask ``route`` first on every ``loop.create_datagram_endpoint`` and
    ``loop.create_connection`` (installed once per loop; a second call only replaces the
    route). Raises RuntimeError for a loop that takes no attributes."""
    if getattr(loop, "_rtclab_socket_route", None) is None:
        try:
            for method in ROUTED_METHODS:
                setattr(loop, method, _routed(loop, method))
        except AttributeError:  # e.g. uvloop: its loop takes no attributes
            raise RuntimeError(
                f"the emulated network needs an asyncio event loop it can hook, not {type(loop)} "
                "(use the default asyncio loop, as Jupyter does)"
            ) from None
    loop._rtclab_socket_route = route  # type: ignore[attr-defined]


def _routed(loop: asyncio.AbstractEventLoop, method: str) -> Callable[..., Awaitable[Any]]:
    """``loop.<method>`` that asks the loop's route, with the call's arguments by name (from
    the original's own signature), before opening a real socket."""
    original = getattr(loop, method)
    signature = inspect.signature(original)

    @functools.wraps(original)
    async def routed(*args: Any, **kwargs: Any) -> Any:
        route: SocketRoute = loop._rtclab_socket_route  # type: ignore[attr-defined]
        opened = await route(method, signature.bind(*args, **kwargs).arguments)
        return opened if opened is not None else await original(*args, **kwargs)

    return routed


class StartTlsTransport(asyncio.Transport):
    """A transport ``loop.start_tls`` accepts: asyncio checks ``_start_tls_compatible``
    before upgrading one and calls ``_force_close`` when the TLS layer fails (Python 3.11+);
    subclasses implement ``abort``."""

    _start_tls_compatible = True

    def _force_close(self, exc: BaseException | None) -> None:
        self.abort()
