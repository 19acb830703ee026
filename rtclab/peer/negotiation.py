"""How a peer negotiates: the signaling loop, offer/answer, trickled candidates, gathering.

A mixin of :class:`~rtclab.peer.Peer`. The choreography is the write-up's VideoRoom: the
joiner offers to everyone already in the room, the others answer. aiortc puts all its
candidates in the SDP; trickled ``ice-candidate`` messages (what browsers send) are
accepted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterator
from typing import Any, Literal

from aiortc import RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from ..ice.gathering import gathering_on
from ..ice.inspect import local_candidates, remote_candidates
from ..signaling.client import SignalingClient, SignalingError
from ._base import PeerBase
from .channels import create_lab_channels
from .connection import RemoteConnection, sdp_candidate_count

log = logging.getLogger(__name__)


class Negotiation(PeerBase):
    """Signaling side of a peer: turns room messages into offers, answers and candidates."""

    async def _signaling_loop(self, client: SignalingClient) -> None:
        try:
            async for message in client:
                try:
                    await self._handle(message)
                except Exception as exc:
                    log.exception("%s: handling %s failed", self.name, message.get("type"))
                    self._emit(message.get("from"), "error", f"{message.get('type')}: {exc}")
        finally:
            if self.state == "joined" and client is self._client:
                self._emit(None, "signaling-closed", self.signaling_url)
                if self.resilience.enabled:
                    self._spawn(self._rejoin(client))

    async def _rejoin(self, old: SignalingClient) -> None:
        """The server went away under a joined peer (a NAT reboot cut its TCP, the server
        restarted): connect and join again, with backoff, then offer to everyone there as a
        fresh joiner does. The server told the others this peer left, so they dropped their
        side: every connection is rebuilt, as a later attempt (its ``connected`` is then
        ``recovered``)."""
        await old.close()
        policy, started, retry = self.resilience, time.monotonic(), 0
        while self.state == "joined":
            client: SignalingClient | None = None
            try:
                client = await SignalingClient.connect(self.signaling_url, timeout=5.0)
                peers = await client.join(self.room, self.name, timeout=5.0)
            except (OSError, SignalingError, asyncio.TimeoutError) as exc:
                if client is not None:
                    await client.close()
                if time.monotonic() - started + policy.delay(retry) > policy.rejoin_timeout:
                    self._emit(None, "error", f"rejoining {self.room!r} failed: {exc}")
                    return
                self._emit(None, "signaling-retry", f"{exc}; again in {policy.delay(retry):g}s")
                await asyncio.sleep(policy.delay(retry))
                retry += 1
                continue
            if self.state != "joined":  # left meanwhile
                await client.close()
                return
            self._client = client
            self._emit(None, "signaling-reconnected", round(time.monotonic() - started, 2))
            self._loop_task = asyncio.ensure_future(self._signaling_loop(client))
            self._present = set(peers)
            attempts = {r: c.attempt for r, c in self.connections.items()}
            await asyncio.gather(*(self._close_connection(r, wait=False) for r in attempts))
            for remote in peers:
                conn = self._new_connection(remote, "offerer")
                conn.attempt = attempts.get(remote, 0) + 1
                conn._spawn(self._guard(conn, "sending the offer", self._offer(conn)))
            return

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "peer-joined":
            remote = str(message["peerId"])
            self._emit(remote, "peer-joined", remote)
            self._present.add(remote)
            if remote not in self.connections:
                self._new_connection(remote, "answerer")
        elif kind == "peer-left":
            remote = str(message["peerId"])
            self._emit(remote, "peer-left", remote)
            self._present.discard(remote)
            await self._close_connection(remote)
        elif kind == "offer":
            remote = str(message["from"])
            conn = self.connections.get(remote)
            if conn is not None and (
                conn.pc.remoteDescription is not None
                or conn.failure_reason is not None
                or conn.pc.connectionState == "closed"
            ):
                # a new negotiation for a link we had: the remote is rebuilding it
                self._emit(remote, "renegotiation", "fresh connection")
                await self._close_connection(remote, wait=False)
                conn = None
            if conn is None:
                conn = self._new_connection(remote, "answerer")
            conn.attempt = _attempt_of(message["sdp"])
            await self._guard(conn, "answering the offer", self._answer(conn, message["sdp"]))
        elif kind == "answer":
            conn = self.connections.get(str(message["from"]))
            if conn is not None:
                sdp = message["sdp"]
                if conn.failure_reason is not None:
                    return  # failed while gathering; its pc is closing
                if _attempt_of(sdp, conn.attempt) != conn.attempt or conn.pc.remoteDescription:
                    self._emit(conn.remote, "stale-answer", _attempt_of(sdp))
                    return  # answers an offer of a connection we have since replaced
                with self._gathering_on(conn):
                    await conn.pc.setRemoteDescription(
                        RTCSessionDescription(sdp=sdp["sdp"], type=sdp["type"])
                    )
                self._timing(conn, "signaling-ms", conn.offer_sent_at, time.monotonic())
                await self._flush_candidates(conn)
        elif kind == "ice-candidate":
            conn = self.connections.get(str(message["from"]))
            if conn is not None:
                conn._pending_candidates.append(message.get("candidate"))
                if conn.pc.remoteDescription is not None:
                    await self._flush_candidates(conn)
        elif kind == "error":
            self._emit(None, "signaling-error", f"{message.get('code')}: {message.get('message')}")

    async def _flush_candidates(self, conn: RemoteConnection) -> None:
        pending, conn._pending_candidates = conn._pending_candidates, []
        for init in pending:
            if init is None or not init.get("candidate"):
                await conn.pc.addIceCandidate(None)  # end-of-candidates
                continue
            text = str(init["candidate"])
            candidate = candidate_from_sdp(text.split(":", 1)[1] if ":" in text else text)
            candidate.sdpMid = init.get("sdpMid")
            candidate.sdpMLineIndex = init.get("sdpMLineIndex")
            if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
                candidate.sdpMLineIndex = 0
            conn.trickled_candidates += 1
            await conn.pc.addIceCandidate(candidate)
        self._stamp_remote(conn)

    async def _guard(self, conn: RemoteConnection, what: str, step: Awaitable[None]) -> None:
        """Run a negotiation step; an exception fails the connection with a reason."""
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s -> %s: %s failed", self.name, conn.remote, what)
            if conn.failure_reason is None:
                self._fail(conn, f"{what} failed: {type(exc).__name__}: {exc}")

    async def _offer(self, conn: RemoteConnection) -> None:
        self._add_media(conn)
        if self.receive:
            # a kind we do not send we still want to receive (offerToReceive*): recvonly
            sending = {t.kind for t in conn.pc.getTransceivers()}
            for kind in ("audio", "video"):
                if kind not in sending:
                    conn.pc.addTransceiver(kind, direction="recvonly")
        if self.data:
            for channel in create_lab_channels(conn.pc):
                self._attach_channel(conn, channel)
        await self._describe(conn, "offer")

    async def _answer(self, conn: RemoteConnection, sdp: dict[str, Any]) -> None:
        with self._gathering_on(conn):
            await conn.pc.setRemoteDescription(
                RTCSessionDescription(sdp=sdp["sdp"], type=sdp["type"])
            )
        self._stamp_remote(conn)
        self._add_media(conn, answering=True)
        await self._describe(conn, "answer")
        await self._flush_candidates(conn)

    async def _describe(self, conn: RemoteConnection, kind: Literal["offer", "answer"]) -> None:
        """Create our ``kind`` of description, gather while setting it (timed and logged),
        send it to the remote, and fail at once if nothing was gathered."""
        started = time.monotonic()
        conn.gathering.begin()
        create = conn.pc.createOffer if kind == "offer" else conn.pc.createAnswer
        description = await create()
        with self._gathering_on(conn):
            await conn.pc.setLocalDescription(description)
        self._gathered(conn, started)
        if self._client is not None:
            send = self._client.offer if kind == "offer" else self._client.answer
            if kind == "offer":
                conn.offer_sent_at = time.monotonic()
            await send(conn.remote, _description(conn))
        self._fail_if_nothing_gathered(conn)

    @contextlib.contextmanager
    def _gathering_on(self, conn: RemoteConnection) -> Iterator[None]:
        """Gather on our interfaces and servers (TURN fallback, CA), reporting to conn;
        on an emulated network, also open the sockets on our host (``self.network``)."""
        network = self.network
        interfaces = self.ice.interfaces if network is None else network.interfaces
        with gathering_on(interfaces, config=self.ice, log=conn.gathering):
            if network is None:
                yield
            else:
                with network.attach():
                    yield

    def _stamp_remote(self, conn: RemoteConnection) -> None:
        conn.gathering.stamp_remote(remote_candidates(conn.pc))

    def _fail_if_nothing_gathered(self, conn: RemoteConnection) -> None:
        """No local candidate can never connect: say why now, not at the timeout.

        Called after our description went out, so the remote learns of us and fails with
        its own reason instead of waiting for an offer that never comes.
        """
        if conn.failure_reason is None and sdp_candidate_count(conn.pc.localDescription) == 0:
            self._fail(conn, self._diagnose(conn, "gathering finished"))

    def _gathered(self, conn: RemoteConnection, started: float) -> None:
        conn.gathering.end(local_candidates(conn.pc))
        count = sdp_candidate_count(conn.pc.localDescription)
        self._emit(conn.remote, "candidates-gathered", count)
        self._emit(conn.remote, "gathering-ms", round((time.monotonic() - started) * 1000, 1))


def _description(conn: RemoteConnection) -> dict[str, Any]:
    """The local description as RTCSessionDescriptionInit, tagged with the attempt number
    (browsers ignore the extra key; our peers use it to drop answers to replaced offers)."""
    desc = conn.pc.localDescription
    return {"type": desc.type, "sdp": desc.sdp, "rtclab": {"attempt": conn.attempt}}


def _attempt_of(sdp: Any, default: int = 0) -> int:
    tag = sdp.get("rtclab") if isinstance(sdp, dict) else None
    attempt = tag.get("attempt") if isinstance(tag, dict) else None
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else default
