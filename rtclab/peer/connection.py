"""One remote's connection as a peer holds it, and the value types a peer reports."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from .._compat.aiortc import on_rtp_packet
from ..cc import RembFeedback
from ..ice.gathering import GatheringLog
from ..model import ConnectionCounters
from .channels import CHAT, CURSORS, Channel
from .feedback import InboundPacketCounter, count_feedback_sent
from .taps import Taps

Role = Literal["offerer", "answerer"]


@dataclass(frozen=True)
class ChatMessage:
    """A chat line as received (or sent: ``remote`` is ``None``)."""

    t: float
    sender: str
    text: str
    remote: str | None


@dataclass(frozen=True)
class PeerEvent:
    t: float
    remote: str | None
    event: str
    value: Any


def count_rtp(transceiver: RTCRtpTransceiver, counters: ConnectionCounters, kind: str) -> None:
    """Count RTP payload bytes as they arrive: aiortc's inbound-rtp has no bytesReceived.

    Payload bytes, like aiortc's outbound ``bytesSent`` (the RTCP sender-report octet count),
    so inbound and outbound bitrates compare like for like. Keyframes, loss bursts and the
    feedback the receiver sends are counted too (:mod:`.feedback`).
    """
    receiver = transceiver.receiver
    stream = counters.rtp_stream("inbound", kind)
    inspect = InboundPacketCounter(receiver, transceiver, stream, kind)

    def count(packet: Any) -> None:
        counters.rtp_bytes_received[kind] = counters.rtp_bytes_received.get(kind, 0) + len(
            packet.payload
        )
        counters.rtp_packets_received[kind] = counters.rtp_packets_received.get(kind, 0) + 1
        inspect(packet)

    on_rtp_packet(receiver, count)
    count_feedback_sent(receiver, stream)


def sdp_candidate_count(description: RTCSessionDescription | None) -> int:
    """Candidates of one ICE transport: the first m-section that lists any.

    aiortc's offer gathers a set per m-section (before the answer settles BUNDLE, each has
    its own transport and port), and the answer repeats its set in every m-section; BUNDLE
    keeps the first one. Counting every line reported one loopback candidate as three.
    """
    if description is None:
        return 0
    sections = re.split(r"\r?\nm=", description.sdp)
    for section in sections:
        count = sum(1 for line in section.splitlines() if line.startswith("a=candidate:"))
        if count:
            return count
    return 0


class RemoteConnection:
    """Our side of the connection to one remote: the RTCPeerConnection and what we count."""

    def __init__(self, remote: str, pc: RTCPeerConnection, role: Role) -> None:
        self.remote = remote
        self.pc = pc
        self.role: Role = role
        self.counters = ConnectionCounters()
        self.channels: dict[str, Channel] = {}
        self.latest_frame: av.VideoFrame | None = None
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.failure_reason: str | None = None
        self.connected = asyncio.Event()
        self.finished = asyncio.Event()  # connected, failed or closed: no longer pending
        self.trickled_candidates = 0
        self.gathering = GatheringLog()  # candidate times, TURN/STUN failures (ice.gathering)
        self._pending_candidates: list[dict[str, Any] | None] = []
        self._senders: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.remote_tracks: dict[str, MediaStreamTrack] = {}
        self.taps = Taps()  # copies of the remote tracks, fed by Peer._consume
        self.attempt = 0  # negotiation number: answers to older offers are ignored
        self.lost = False  # no bytes arrived for Resilience.loss_timeout
        # connection timings (monotonic): see Peer._timing
        self.offer_sent_at: float | None = None
        self.ice_checking_at: float | None = None
        self.ice_connected_at: float | None = None
        self.first_frame_at: float | None = None
        # capture -> decode latency (ms) of the newest tagged video frames, for live views
        self.recent_latency_ms: deque[float] = deque(maxlen=30)
        # the estimator on the video we receive (Peer(estimator=...)): its REMBs, its state
        self.estimation: RembFeedback | None = None

    @property
    def state(self) -> str:
        """``pc.connectionState``; ``failed`` once we gave up (see :attr:`failure_reason`);
        ``disconnected`` while nothing arrives (aiortc itself has no such state)."""
        if self.failure_reason is not None:
            return "failed"
        state = str(self.pc.connectionState)
        if state == "connected" and self.lost:
            return "disconnected"
        return state

    @property
    def connect_ms(self) -> float | None:
        if self.connected_at is None:
            return None
        return (self.connected_at - self.created_at) * 1000

    @property
    def channels_open(self) -> bool:
        """Every data channel of this connection is open, so a send is delivered.

        The offerer knows its channels when it creates them, and each opens when the
        answerer acknowledges it — after the answerer made its side, already open. The
        answerer learns the channels from the remote: once the remote's description has an
        ``m=application`` section, it waits for the first one to arrive (a lab peer and the
        browser client announce ``chat`` and ``cursors`` together). So when both sides of a
        pair are waited for (:meth:`Lab.wait_connected`), every channel is open on both.
        """
        if not all(channel.is_open for channel in self.channels.values()):
            return False
        remote = self.pc.remoteDescription
        if self.role == "answerer" and remote is not None and "m=application" in remote.sdp:
            return bool(self.channels)
        return True

    @property
    def usable(self) -> bool:
        """Connected and every negotiated data channel open: what :meth:`Peer.wait_connected`
        waits for, so that a chat line sent right after it arrives."""
        return self.state == "connected" and self.channels_open

    @property
    def chat(self) -> Channel | None:
        return self.channels.get(CHAT)

    @property
    def cursors(self) -> Channel | None:
        return self.channels.get(CURSORS)

    def subscribe(self, kind: str, *, buffered: bool = True) -> MediaStreamTrack:
        """A copy of what the remote sends (``"audio"``/``"video"``), for a recorder or a preview.

        The remote track itself has a single reader (our frame counter); everyone else gets
        a relayed copy, so nobody steals frames from anybody. Stop the copy when done.
        """
        track = self.remote_tracks.get(kind)
        if track is None:
            raise LookupError(
                f"{self.remote} sends no {kind} (tracks: {sorted(self.remote_tracks) or 'none'})"
            )
        return self.taps.add(track, buffered=buffered)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __repr__(self) -> str:
        return f"<RemoteConnection {self.remote} {self.role} {self.state}>"
