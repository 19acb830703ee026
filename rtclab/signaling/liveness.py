"""The server's liveness checks: who is still there, when nothing says otherwise.

A client behind a NAT that rebooted, or a laptop whose lid closed, never sends a FIN: its
TCP connection looks open until something is written to it. One periodic sweep pings
silent clients and reaps those that stay silent (no timer per connection). A join under a
name that is already seated *challenges* the holder instead of waiting for the sweep: it
is pinged at once and reaped if it does not answer within :data:`CHALLENGE_S`, so a peer
that comes back under its own name gets its seat within seconds. The seat is never taken
from a holder that answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from .connection import Connection
from .rules import liveness

__all__ = ["CHALLENGE_S", "PING", "Liveness"]

logger = logging.getLogger("rtclab.signaling.server")

PING: Final = b"\x89\x00"  # unmasked ping, empty payload: every WebSocket stack answers it
#: How long a challenged holder has to answer the ping (a pong is any frame at all).
CHALLENGE_S: Final = 2.0

_monotonic = time.monotonic


class Liveness:
    """A mixin of the server: the sweep and the challenge (both need its connections)."""

    _conns: set[Connection]
    ping_timeout: float
    disconnects: Counter[str]
    _event_listeners: list[Any]

    if TYPE_CHECKING:  # the server's and its Observers'

        def _who(self, conn: Any) -> str: ...
        def _event(self, remote: str | None, event: str, value: Any) -> None: ...

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
                    conn.send_raw(PING)
                elif state == "dead":
                    self._reap(conn, "idle", now)

    def _challenge(self, conn: Any) -> None:
        """Ping the holder of a contested seat now; reap it if it stays silent."""
        if not isinstance(conn, Connection) or not conn.writable:
            return  # a remote member's proxy: its own server checks it
        asked = conn.last_ping = _monotonic()
        conn.send_raw(PING)
        loop = asyncio.get_running_loop()
        loop.call_later(CHALLENGE_S, self._answered, conn, asked)

    def _answered(self, conn: Connection, asked: float) -> None:
        if conn in self._conns and conn.writable and conn.last_seen < asked:
            self._reap(conn, "challenged", _monotonic())

    def _reap(self, conn: Connection, why: str, now: float) -> None:
        self.disconnects[why] += 1
        silent = now - conn.last_seen
        logger.info("%s: silent for %.1f s, dropped (%s)", self._who(conn), silent, why)
        if self._event_listeners:
            value = {"silent_s": round(silent, 3), "why": why}
            self._event(self._who(conn), "signaling-reaped", value)
        conn.abort()
