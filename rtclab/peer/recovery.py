"""How a peer notices a dead link and rebuilds it (aiortc has no ICE restart).

A mixin of :class:`~rtclab.peer.Peer`; the decisions are pure (:mod:`.resilience`), this
module watches the bytes and replaces the connection.
"""

from __future__ import annotations

import asyncio

from .._compat.aiortc import dtls_bytes_received
from ..ice.inspect import dtls_transports
from ._base import PeerBase
from .connection import RemoteConnection
from .resilience import LivenessTracker, is_restarter


class Recovery(PeerBase):
    """Liveness watch and reconnection with backoff, per connection."""

    async def _monitor(self, conn: RemoteConnection) -> None:
        """Watch bytes arriving; say ``lost`` fast, and rebuild the link if it stays lost."""
        policy = self.resilience
        loop = asyncio.get_running_loop()

        def rx_bytes() -> int:
            return sum(dtls_bytes_received(t) or 0 for t in dtls_transports(conn.pc))

        tracker = LivenessTracker(policy, loop.time(), rx_bytes())
        next_beat = loop.time()
        while conn.pc.connectionState != "closed":
            await asyncio.sleep(policy.check_interval)
            now = loop.time()
            if now >= next_beat:
                next_beat = now + policy.heartbeat_interval
                channel = conn.cursors
                if channel is not None and channel.is_open:
                    channel.send_heartbeat()
            verdict = tracker.observe(now, rx_bytes())
            if verdict == "lost":
                conn.lost = True
                self._emit(conn.remote, "lost", f"nothing received for {policy.loss_timeout:g}s")
            elif verdict == "recovered":
                conn.lost = False
                self._emit(conn.remote, "recovered", "traffic resumed")
            elif verdict == "restart":
                restarter = is_restarter(self.name, conn.remote)
                self._emit(
                    conn.remote,
                    "recovering",
                    "rebuilding the connection" if restarter else f"waiting for {conn.remote}",
                )
                if restarter and conn.remote in self._present:
                    self._spawn(self._restart(conn.remote, conn.attempt + 1))
                    return

    async def _restart(self, remote: str, attempt: int) -> None:
        """Replace the connection to ``remote`` with a fresh one until it connects (backoff)."""
        retry = 0
        while self.state == "joined" and remote in self._present:
            await self._close_connection(remote, wait=False)
            conn = self._new_connection(remote, "offerer")
            conn.attempt = attempt
            self._emit(remote, "restart", attempt)
            await self._guard(conn, "sending the offer", self._offer(conn))
            await conn.finished.wait()
            if conn.connected_at is not None or self.connections.get(remote) is not conn:
                return
            delay = self.resilience.delay(retry)
            retry += 1
            attempt += 1
            self._emit(remote, "recovering", f"attempt failed; retrying in {delay:g}s")
            await asyncio.sleep(delay)
