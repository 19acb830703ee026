"""Peer: one identity in a signaling room, one aiortc RTCPeerConnection per remote (a mesh).

The choreography is the write-up's VideoRoom: the joiner offers to everyone already in the
room, the others answer. aiortc puts all its candidates in the SDP; trickled
``ice-candidate`` messages (what browsers send) are accepted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from .._compat.aiortc import cap_encoder_bitrate, dtls_transport_stats, on_rtp_packet
from ..ice.config import IceConfig
from ..ice.gathering import GatheringLog, gathering_on
from ..signaling.client import SignalingClient, SignalingError
from .channels import CHAT, CURSORS, Channel, create_lab_channels
from .counters import ConnectionCounters
from .media import VIDEO_CLOCK_RATE, TestPatternTrack, ToneTrack, blank_like
from .resilience import LivenessTracker, Resilience, is_restarter

if TYPE_CHECKING:
    import pandas as pd

    from ..net.base import NetworkAttachment

log = logging.getLogger(__name__)

EventListener = Callable[[str, "str | None", str, Any], None]
Role = Literal["offerer", "answerer"]
VideoSource = Literal["camera", "screen"]


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


class _CountingTrack(MediaStreamTrack):
    """Forwards a source track's frames to one sender and counts them (frames_sent).

    While ``muted[kind]`` is set it sends black frames / silence instead, as a browser does
    for a disabled track: the stream, its RTP timing and the stats keep going.
    """

    def __init__(
        self,
        source: MediaStreamTrack,
        counters: ConnectionCounters,
        muted: dict[str, bool],
        caps: dict[str, int | None],
    ) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._counters = counters
        self._muted = muted
        self._caps = caps
        self._applied_cap: int | None = None
        self._last_pts = -1
        self.sender: Any = None  # set once added: where the bitrate cap goes

    async def recv(self) -> Any:
        frame = await self._source.recv()
        cap = self._caps.get(self.kind)
        if cap != self._applied_cap and self.sender is not None:
            if cap_encoder_bitrate(self.sender, cap):
                self._applied_cap = cap
        if self._muted.get(self.kind) and isinstance(frame, (av.VideoFrame, av.AudioFrame)):
            frame = blank_like(frame)
        if isinstance(frame, av.VideoFrame):
            # Capture-time timestamps, as a browser does: sources swapped in by replaceTrack
            # (a file restarting at pts 0, a new pattern) never make RTP time run backwards,
            # which receivers' jitter buffers would drop. One clock for every connection,
            # so the frame object the relay shares gets the same value from each of us.
            pts = int((time.monotonic() - _CLOCK0) * VIDEO_CLOCK_RATE)
            frame.pts = max(pts, self._last_pts + 1)
            frame.time_base = _VIDEO_TIME_BASE
            self._last_pts = frame.pts
        sent = self._counters.frames_sent
        sent[self.kind] = sent.get(self.kind, 0) + 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._source.stop()


_CLOCK0 = time.monotonic()
_VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


def _count_rtp(receiver: RTCRtpReceiver, counters: ConnectionCounters, kind: str) -> None:
    """Count RTP payload bytes as they arrive: aiortc's inbound-rtp has no bytesReceived.

    Payload bytes, like aiortc's outbound ``bytesSent`` (the RTCP sender-report octet count),
    so inbound and outbound bitrates compare like for like.
    """

    def count(packet: Any) -> None:
        counters.rtp_bytes_received[kind] = counters.rtp_bytes_received.get(kind, 0) + len(
            packet.payload
        )
        counters.rtp_packets_received[kind] = counters.rtp_packets_received.get(kind, 0) + 1

    on_rtp_packet(receiver, count)


def _sdp_candidate_count(description: RTCSessionDescription | None) -> int:
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
        self._relay_in = MediaRelay()
        self.attempt = 0  # negotiation number: answers to older offers are ignored
        self.lost = False  # no bytes arrived for Resilience.loss_timeout

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
        return self._relay_in.subscribe(track, buffered=buffered)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __repr__(self) -> str:
        return f"<RemoteConnection {self.remote} {self.role} {self.state}>"


class Peer:
    """A lab participant: joins ``room`` on a signaling server and meshes with everyone there.

    Media is synthetic by default (a moving test pattern and a tone), so a peer needs no
    camera; ``video=False`` / ``audio=False`` / ``data=False`` turn sending parts off. As an
    offerer it still asks to receive audio and video (recvonly m-lines) unless
    ``receive=False``, so a viewer that sends nothing can join and watch.
    """

    def __init__(
        self,
        name: str,
        signaling_url: str,
        *,
        room: str = "lab",
        video: bool = True,
        audio: bool = True,
        data: bool = True,
        receive: bool = True,
        width: int = 320,
        height: int = 240,
        fps: float = 15.0,
        ice: IceConfig | None = None,
        keep_events: int = 10_000,
        resilience: Resilience | None = None,
        network: NetworkAttachment | None = None,
    ) -> None:
        self.name = name
        self.room = room
        self.signaling_url = signaling_url
        self.ice = ice or IceConfig()
        # an emulated host (rtclab.net) to gather and open sockets on; None: this machine
        self.network = network
        self.resilience = resilience or Resilience()
        self._present: set[str] = set()  # remotes the server says are in the room
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: set[asyncio.Task[None]] = set()  # pc closes that outlive a cancel
        self.data = data
        self.receive = receive
        self.connections: dict[str, RemoteConnection] = {}
        self.chat_log: list[ChatMessage] = []
        self.cursor_positions: dict[str, tuple[float, float]] = {}
        self.events: deque[PeerEvent] = deque(maxlen=keep_events)
        self.state: Literal["new", "joining", "joined", "left"] = "new"
        self._listeners: list[EventListener] = []
        self._client: SignalingClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._relay = MediaRelay()
        self._camera: MediaStreamTrack | None = (
            TestPatternTrack(width, height, fps) if video else None
        )
        self._screen: MediaStreamTrack | None = None
        self.video_source: VideoSource | None = "camera" if video else None
        self._audio: MediaStreamTrack | None = ToneTrack() if audio else None
        self._size = (width, height)
        self._fps = fps
        self._chat_seq = 0
        self.muted: dict[str, bool] = {"audio": False, "video": False}
        self.max_bitrate: dict[str, int | None] = {"video": None}

    # --- events ---------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        """``listener(peer, remote, event, value)`` is called for every event (cheap, sync)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, remote: str | None, event: str, value: Any = None) -> None:
        self.events.append(PeerEvent(time.time(), remote, event, value))
        for listener in list(self._listeners):
            try:
                listener(self.name, remote, event, value)
            except Exception:  # a broken listener must not break the peer
                log.exception("event listener failed")

    # --- lifecycle ------------------------------------------------------------------------

    async def join(self, room: str | None = None) -> Peer:
        """Connect to the signaling server, join the room and offer to everyone already there."""
        if self.state in ("joining", "joined"):
            raise RuntimeError(f"peer {self.name!r} has already joined room {self.room!r}")
        if room is not None:
            self.room = room
        self.state = "joining"
        try:
            self._client = await SignalingClient.connect(self.signaling_url)
            peers = await self._client.join(self.room, self.name)
        except (OSError, SignalingError, asyncio.TimeoutError) as exc:
            self.state = "new"
            if self._client is not None:
                await self._client.close()
                self._client = None
            self._emit(None, "error", f"join failed: {exc}")
            if isinstance(exc, SignalingError) and exc.code != "connect-failed":
                raise
            raise ConnectionError(
                f"cannot reach the signaling server at {self.signaling_url}: {exc} "
                "(is it running? `rtclab serve`, or use Lab() which starts one)"
            ) from exc
        self.state = "joined"
        self._emit(None, "joined", self.room)
        self._loop_task = asyncio.ensure_future(self._signaling_loop(self._client))
        self._present = set(peers)
        for remote in peers:
            conn = self._new_connection(remote, "offerer")
            conn._spawn(self._guard(conn, "sending the offer", self._offer(conn)))
        return self

    async def leave(self) -> None:
        """Leave the room and close every connection; :meth:`join` works again afterwards."""
        if self.state == "left" or self.state == "new":
            return
        client, self._client = self._client, None
        self.state = "left"
        if client is not None:
            with contextlib.suppress(Exception):
                await client.leave()
            await client.close()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
            self._loop_task = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._present.clear()
        await asyncio.gather(*(self._close_connection(r) for r in list(self.connections)))
        await asyncio.gather(*self._closing, return_exceptions=True)
        self._emit(None, "left", self.room)

    async def close(self) -> None:
        """Leave and stop the media sources."""
        await self.leave()
        for track in (self._camera, self._screen, self._audio):
            if track is not None:
                track.stop()

    async def __aenter__(self) -> Peer:
        return await self.join()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_connected(
        self, count: int | None = None, timeout: float | None = None, *, channels: bool = True
    ) -> list[RemoteConnection]:
        """Wait until ``count`` connections (default: every known one) are usable: connected
        and, with ``channels`` (default), their negotiated data channels open too — ICE and
        DTLS come up some milliseconds before SCTP opens the channels, and a chat line sent
        in between would reach nobody.

        Raises :class:`ConnectionError` naming the reason when one of them fails first.
        """
        timeout = self.ice.connect_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            conns = list(self.connections.values())
            done = [c for c in conns if (c.usable if channels else c.state == "connected")]
            failed = [c for c in conns if c.failure_reason]
            if failed:
                c = failed[0]
                raise ConnectionError(f"{self.name} -> {c.remote} failed: {c.failure_reason}")
            wanted = len(conns) if count is None else count
            if len(done) >= wanted and (conns or count == 0):
                return done
            remaining = deadline - loop.time()
            if remaining <= 0:
                states = {
                    c.remote: "connected, data channels not open" if c.state == "connected"
                    else c.state
                    for c in conns
                    if c not in done
                }  # fmt: skip
                raise TimeoutError(
                    f"{self.name}: {len(done)} of {wanted} connections up after {timeout}s "
                    f"({states})"
                )
            await asyncio.sleep(min(0.02, remaining))

    # --- signaling ------------------------------------------------------------------------

    async def _signaling_loop(self, client: SignalingClient) -> None:
        try:
            async for message in client:
                try:
                    await self._handle(message)
                except Exception as exc:
                    log.exception("%s: handling %s failed", self.name, message.get("type"))
                    self._emit(message.get("from"), "error", f"{message.get('type')}: {exc}")
        finally:
            if self.state == "joined":
                self._emit(None, "signaling-closed", self.signaling_url)

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
        started = time.monotonic()
        conn.gathering.begin()
        offer = await conn.pc.createOffer()
        with self._gathering_on(conn):
            await conn.pc.setLocalDescription(offer)
        self._gathered(conn, started)
        if self._client is not None:
            await self._client.offer(conn.remote, _description(conn))
        self._fail_if_nothing_gathered(conn)

    async def _answer(self, conn: RemoteConnection, sdp: dict[str, Any]) -> None:
        with self._gathering_on(conn):
            await conn.pc.setRemoteDescription(
                RTCSessionDescription(sdp=sdp["sdp"], type=sdp["type"])
            )
        self._stamp_remote(conn)
        self._add_media(conn, answering=True)
        started = time.monotonic()
        conn.gathering.begin()
        answer = await conn.pc.createAnswer()
        with self._gathering_on(conn):
            await conn.pc.setLocalDescription(answer)
        self._gathered(conn, started)
        if self._client is not None:
            await self._client.answer(conn.remote, _description(conn))
        self._fail_if_nothing_gathered(conn)
        await self._flush_candidates(conn)

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
        from ..ice.inspect import remote_candidates

        conn.gathering.stamp_remote(remote_candidates(conn.pc))

    def _fail_if_nothing_gathered(self, conn: RemoteConnection) -> None:
        """No local candidate can never connect: say why now, not at the timeout.

        Called after our description went out, so the remote learns of us and fails with
        its own reason instead of waiting for an offer that never comes.
        """
        if conn.failure_reason is None and _sdp_candidate_count(conn.pc.localDescription) == 0:
            self._fail(conn, self._diagnose(conn, "gathering finished"))

    def _gathered(self, conn: RemoteConnection, started: float) -> None:
        from ..ice.inspect import local_candidates

        conn.gathering.end(local_candidates(conn.pc))
        count = _sdp_candidate_count(conn.pc.localDescription)
        self._emit(conn.remote, "candidates-gathered", count)
        self._emit(conn.remote, "gathering-ms", round((time.monotonic() - started) * 1000, 1))

    # --- connections ----------------------------------------------------------------------

    def _new_connection(self, remote: str, role: Role) -> RemoteConnection:
        pc = RTCPeerConnection(configuration=self.ice.rtc_configuration())
        conn = RemoteConnection(remote, pc, role)
        conn.gathering.on_event = lambda event, value: self._emit(remote, event, value)
        self.connections[remote] = conn

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            state = pc.connectionState
            self._emit(remote, "connection-state", state)
            if state == "connected" and conn.connected_at is None:
                conn.connected_at = time.monotonic()
                conn.connected.set()
                conn.finished.set()
                self._emit(remote, "connected", round(conn.connect_ms or 0.0, 1))
                self._report_pair(conn)
                if conn.attempt > 0:
                    self._emit(remote, "recovered", f"new connection (attempt {conn.attempt})")
                if self.resilience.enabled:
                    conn._spawn(self._monitor(conn))
            elif state == "failed" and conn.failure_reason is None:
                self._fail(conn, self._diagnose(conn, "ICE reported failure"))

        @pc.on("iceconnectionstatechange")
        def _on_ice() -> None:
            self._emit(remote, "ice-connection-state", pc.iceConnectionState)

        @pc.on("icegatheringstatechange")
        def _on_gathering() -> None:
            self._emit(remote, "ice-gathering-state", pc.iceGatheringState)

        @pc.on("signalingstatechange")
        def _on_signaling() -> None:
            self._emit(remote, "signaling-state", pc.signalingState)

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is track:
                    _count_rtp(transceiver.receiver, conn.counters, track.kind)
            conn.remote_tracks[track.kind] = track
            self._emit(remote, "track", track.kind)
            conn._spawn(self._consume(conn, conn.subscribe(track.kind)))

        @pc.on("datachannel")
        def _on_datachannel(channel: Any) -> None:
            self._attach_channel(conn, channel)

        conn._spawn(self._watchdog(conn))
        self._emit(remote, "connection-created", role)
        return conn

    def _add_media(self, conn: RemoteConnection, *, answering: bool = False) -> None:
        """Give this connection its own relayed copy of each local source (and count frames).

        When answering, only kinds the offer has an m-line for: an answer cannot add media
        (aiortc crashes in setLocalDescription if we try) — e.g. a video-only offerer gets
        no audio from us until it offers audio.
        """
        offered = {t.kind for t in conn.pc.getTransceivers()} if answering else None
        for kind, track in (("audio", self._audio), ("video", self._current_video())):
            if track is None or kind in conn._senders:
                continue
            if offered is not None and kind not in offered:
                self._emit(conn.remote, "media-not-offered", kind)
                continue
            proxy = self._sender_track(conn, track)
            conn._senders[kind] = proxy.sender = conn.pc.addTrack(proxy)

    def _sender_track(self, conn: RemoteConnection, source: MediaStreamTrack) -> _CountingTrack:
        """This connection's own relayed copy of ``source``: one source feeds every remote."""
        relayed = self._relay.subscribe(source, buffered=False)
        return _CountingTrack(relayed, conn.counters, self.muted, self.max_bitrate)

    def _current_video(self) -> MediaStreamTrack | None:
        if self.video_source == "screen":
            return self._screen
        return self._camera

    def _attach_channel(self, conn: RemoteConnection, channel: Any) -> None:
        label = str(channel.label)
        conn.channels[label] = Channel(
            channel,
            conn.counters.channel(label),
            on_message=lambda message: self._on_channel_message(conn, label, message),
        )
        if channel.readyState == "open":
            # the answerer's channels arrive open (aiortc opens them before the
            # ``datachannel`` event): no ``open`` event will follow, so report it now
            self._emit(conn.remote, "datachannel-open", label)
        else:
            channel.on("open", lambda: self._emit(conn.remote, "datachannel-open", label))

    def _on_channel_message(
        self, conn: RemoteConnection, label: str, message: dict[str, Any]
    ) -> None:
        if label == CHAT and message.get("type") == "chat":
            entry = ChatMessage(time.time(), conn.remote, str(message.get("text", "")), conn.remote)
            self.chat_log.append(entry)
            self._emit(conn.remote, "chat", entry.text)
        elif label == CURSORS and message.get("type") == "cursor":
            try:
                self.cursor_positions[conn.remote] = (float(message["x"]), float(message["y"]))
            except (KeyError, TypeError, ValueError):
                pass

    async def _consume(self, conn: RemoteConnection, track: MediaStreamTrack) -> None:
        """Pull decoded frames so they are counted and the latest video frame is kept."""
        received = conn.counters.frames_received
        kind = track.kind
        try:
            while True:
                frame = await track.recv()
                received[kind] = received.get(kind, 0) + 1
                if isinstance(frame, av.VideoFrame):
                    conn.latest_frame = frame
        except MediaStreamError:
            return

    async def _watchdog(self, conn: RemoteConnection) -> None:
        """Declare the connection failed, with a reason, if it is not up within the timeout."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(conn.finished.wait(), self.ice.connect_timeout)
            return
        if conn.connected_at is None and conn.failure_reason is None:
            self._fail(
                conn, self._diagnose(conn, f"not connected after {self.ice.connect_timeout:g}s")
            )

    def _diagnose(self, conn: RemoteConnection, what: str) -> str:
        """Name the first missing step, so a failure says what to fix."""
        pc = conn.pc
        policy = self.ice.ice_transport_policy
        has_turn = self.ice.has_turn
        turn_failure = conn.gathering.first_failure("turn")
        local = _sdp_candidate_count(pc.localDescription)
        remote = _sdp_candidate_count(pc.remoteDescription) + conn.trickled_candidates
        if pc.localDescription is None and pc.remoteDescription is None:
            peer = "offer" if conn.role == "answerer" else "local description"
            return f"{what}: no {peer} exchanged with {conn.remote} (signaling did not complete)"
        if pc.localDescription is not None and local == 0:
            if turn_failure is not None:
                return f"{what}: no local ICE candidates were gathered: {turn_failure.message}"
            if conn.role == "answerer" and pc.remoteDescription is not None and remote == 0:
                # aioice drops a component the remote ended without candidates: no gathering
                return (
                    f"{what}: {conn.remote} offered no ICE candidates, so none were gathered "
                    "here either (see its own failure reason)"
                )
            hint = (
                "ice_transport_policy='relay' needs a TURN server in ice_servers"
                if policy == "relay" and not has_turn
                else f"check the interfaces ({self.ice.interfaces}) and ICE servers"
            )
            return f"{what}: no local ICE candidates were gathered ({hint})"
        if pc.remoteDescription is None:
            return f"{what}: no answer from {conn.remote} (signaling did not complete)"
        if remote == 0:
            return f"{what}: {conn.remote} sent no ICE candidates"
        also = f"; {turn_failure.message}" if turn_failure is not None else ""
        return (
            f"{what}: ICE connectivity checks failed ({local} local x {remote} remote "
            f"candidates, no pair succeeded){also}"
        )

    def _fail(self, conn: RemoteConnection, reason: str) -> None:
        conn.failure_reason = reason
        conn.finished.set()
        self._emit(conn.remote, "failed", reason)
        conn._spawn(self._close_pc(conn.pc))

    def _report_pair(self, conn: RemoteConnection) -> None:
        from ..ice.inspect import selected_candidate_pair

        pair = selected_candidate_pair(conn.pc)
        if pair is not None:
            self._emit(
                conn.remote,
                "selected-pair",
                f"{pair.local_candidate_type}/{pair.remote_candidate_type} "
                f"{pair.protocol} {pair.local_address} -> {pair.remote_address}",
            )

    async def _monitor(self, conn: RemoteConnection) -> None:
        """Watch bytes arriving; say ``lost`` fast, and rebuild the link if it stays lost."""
        from ..ice.inspect import dtls_transports

        policy = self.resilience
        loop = asyncio.get_running_loop()

        def rx_bytes() -> int:
            total = 0
            for transport in dtls_transports(conn.pc):
                with contextlib.suppress(Exception):
                    for stats in (dtls_transport_stats(transport) or {}).values():
                        total += int(getattr(stats, "bytesReceived", 0) or 0)
            return total

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

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        """Close ``pc`` to the end even when the caller is cancelled.

        An aiortc close cut short leaves that pc's RTP, RTCP and consent tasks and its
        sockets running for good (seen: ``leave()`` cancelled the signaling loop while it
        was closing the connection of a remote that had just left). The close runs in its
        own task; :meth:`leave` waits for any still running.
        """
        task = asyncio.ensure_future(_close_quietly(pc))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        await asyncio.shield(task)

    async def _close_connection(self, remote: str, *, wait: bool = True) -> None:
        """Forget the connection to ``remote`` and close it.

        ``wait=False`` (replacing a lost link) closes in the background: a pc whose remote
        vanished can take seconds to close, and the new one must not wait for it.
        """
        conn = self.connections.pop(remote, None)
        if conn is None:
            return
        conn.finished.set()
        for sender in conn._senders.values():
            if sender.track is not None:
                sender.track.stop()
        if wait:
            await self._dispose(conn)
        else:
            self._spawn(self._dispose(conn))

    async def _dispose(self, conn: RemoteConnection) -> None:
        await self._close_pc(conn.pc)
        for task in list(conn._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(
            *(t for t in conn._tasks if t is not asyncio.current_task()), return_exceptions=True
        )
        self._emit(conn.remote, "closed", None)

    # --- media and data -------------------------------------------------------------------

    def switch_video(self, source: VideoSource) -> None:
        """Swap the video every remote receives ("camera" or "screen") with replaceTrack.

        No renegotiation: like the write-up's screen share, the sender keeps its m-line.
        """
        if self._camera is None:
            raise RuntimeError(f"peer {self.name!r} has no video (created with video=False)")
        if source not in ("camera", "screen"):
            raise ValueError("source must be 'camera' or 'screen'")
        if source == "screen" and self._screen is None:
            width, height = self._size
            self._screen = TestPatternTrack(width * 2, height * 2, self._fps, style="screen")
        self.video_source = source
        track = self._current_video()
        assert track is not None
        for conn in self.connections.values():
            sender = conn._senders.get("video")
            if sender is None:
                continue
            old = sender.track
            proxy = self._sender_track(conn, track)
            if proxy.kind != "video":  # aiortc's replaceTrack does not check the kind
                raise ValueError("replacement track must be video")
            sender.replaceTrack(proxy)
            proxy.sender = sender
            if old is not None:
                # The sender may be awaiting old.recv() right now, and a stopped track ends
                # aiortc's send loop for good: retire the old copy once it has moved on.
                asyncio.get_running_loop().call_later(2.0, old.stop)
        self._emit(None, "video-source", source)

    def set_max_bitrate(self, kbps: float | None) -> None:
        """Cap the video bitrate every remote gets (``None``: aiortc's own REMB-driven rate).

        Takes effect at the next frame; shows up in the stats' ``bitrate_kbps``. A cap
        below what the encoder can reach at its quantizer limit is not met: VP8 settles
        near 200 kbps for a 640x480@30 test pattern, so lower the resolution or frame rate
        (:meth:`set_video_format`) as well, as a browser's degradation preference would.
        """
        if kbps is not None and kbps <= 0:
            raise ValueError("kbps must be positive, or None to remove the cap")
        self.max_bitrate["video"] = None if kbps is None else int(kbps * 1000)
        self._emit(None, "max-bitrate-kbps", kbps)

    def set_video_format(
        self, width: int | None = None, height: int | None = None, fps: float | None = None
    ) -> None:
        """Change the camera's resolution and frame rate live (a new source, replaceTrack)."""
        if self._camera is None:
            raise RuntimeError(f"peer {self.name!r} has no video (created with video=False)")
        w, h = width or self._size[0], height or self._size[1]
        self._size, self._fps = (w, h), fps or self._fps
        self.set_video_source(TestPatternTrack(w, h, self._fps))

    def set_video_source(self, source: MediaStreamTrack | str | Path) -> None:
        """Send another camera: a video track, or a media file played in a loop (MediaPlayer).

        The track's kind is checked (aiortc's replaceTrack does not), then every remote
        switches to it without renegotiation.
        """
        if isinstance(source, (str, Path)):
            from .media import FileTrack

            track: MediaStreamTrack = FileTrack(str(source))
        else:
            track = source
        if track.kind != "video":
            raise ValueError(f"a video source must be a video track, not {track.kind!r}")
        if self._camera is None:
            raise RuntimeError(f"peer {self.name!r} has no video (created with video=False)")
        old, self._camera = self._camera, track
        self.switch_video("camera")
        if old is not track:
            asyncio.get_running_loop().call_later(2.0, old.stop)

    def set_muted(self, kind: Literal["audio", "video"], muted: bool = True) -> None:
        """Mute or unmute what every remote receives (black frames / silence while muted)."""
        if kind not in self.muted:
            raise ValueError("kind must be 'audio' or 'video'")
        self.muted[kind] = bool(muted)
        self._emit(None, f"{kind}-muted", bool(muted))

    @property
    def local_video(self) -> MediaStreamTrack | None:
        """The source currently sent (for previews)."""
        return self._current_video()

    async def send_chat(self, text: str) -> int:
        """Send a chat line to every remote with an open chat channel; returns how many.

        Raises :class:`ConnectionError` when no remote has one (nobody there yet, or the
        channels are still opening: ``await peer.wait_connected()`` first); only a line
        that went out is logged in :attr:`chat_log`.
        """
        targets = [c.chat for c in self.connections.values() if c.chat and c.chat.is_open]
        if not targets:
            pending = sorted(c.remote for c in self.connections.values())
            raise ConnectionError(
                f"{self.name} has no open chat channel to send on "
                + (
                    f"(connections to {', '.join(pending)} are not usable yet: "
                    "`await peer.wait_connected()` or `await lab.wait_connected()` first)"
                    if pending
                    else "(nobody else is in the room)"
                )
            )
        self._chat_seq += 1
        message = {"type": "chat", "text": text, "seq": self._chat_seq, "t": time.time()}
        await asyncio.gather(*(ch.send(message) for ch in targets if ch is not None))
        self.chat_log.append(ChatMessage(time.time(), self.name, text, None))
        return len(targets)

    def send_cursor(self, x: float, y: float) -> int:
        """Send a cursor position on the unreliable channel; returns how many remotes took it
        (0 when no channel is open yet: the position is counted as dropped, not sent).

        Over the back-pressure threshold a position is dropped (and counted): a newer one is
        on its way, so queueing stale positions would only add latency.
        """
        message = {"type": "cursor", "x": x, "y": y}
        sent = 0
        for conn in self.connections.values():
            channel = conn.cursors
            if channel is not None and channel.try_send(message):
                sent += 1
        return sent

    async def record(
        self,
        remote: str,
        path: str | Path,
        duration: float,
        *,
        kinds: Iterable[str] = ("audio", "video"),
    ) -> Path:
        """Record what ``remote`` sends for ``duration`` seconds to ``path`` (.mp4, .webm, ...)."""
        from .recorder import record_tracks

        conn = self.connections.get(remote)
        if conn is None:
            raise LookupError(f"{self.name} has no connection to {remote!r}")
        tracks = [conn.subscribe(k) for k in kinds if k in conn.remote_tracks]
        if not tracks:
            raise LookupError(f"{remote} sends none of {list(kinds)}")
        self._emit(remote, "recording", str(path))
        return await record_tracks(tracks, path, duration)

    def latest_frame(self, remote: str) -> av.VideoFrame | None:
        conn = self.connections.get(remote)
        return None if conn is None else conn.latest_frame

    # --- ICE inspection ---------------------------------------------------------------------

    def candidates(self) -> pd.DataFrame:
        """Every local and remote candidate of every connection, with timing and the
        selected pair marked (columns: :data:`rtclab.ice.inspect.CANDIDATE_COLUMNS`)."""
        from ..ice.inspect import candidate_rows, candidates_frame

        rows: list[dict[str, Any]] = []
        for remote, conn in list(self.connections.items()):
            rows += candidate_rows(conn.pc, peer=self.name, remote=remote, log=conn.gathering)
        return candidates_frame(rows)

    # --- stats source -----------------------------------------------------------------------

    def stats_targets(self) -> Iterable[tuple[str, RTCPeerConnection, ConnectionCounters]]:
        """What a StatsCollector polls: (remote, pc, counters) of every open connection."""
        for remote, conn in list(self.connections.items()):
            if conn.pc.connectionState != "closed":
                yield remote, conn.pc, conn.counters

    def __iter__(self) -> Iterator[RemoteConnection]:
        return iter(list(self.connections.values()))

    def __repr__(self) -> str:
        states = ", ".join(f"{r}:{c.state}" for r, c in self.connections.items())
        return f"<Peer {self.name!r} room={self.room!r} {self.state} [{states}]>"

    # --- Jupyter ------------------------------------------------------------------------------

    def preview_track(self) -> MediaStreamTrack | None:
        """A relayed copy of the video source being sent, for a local preview; ``stop()`` it.

        Relayed like every connection's copy, so a preview never takes frames from a sender.
        """
        source = self._current_video()
        return None if source is None else self._relay.subscribe(source, buffered=False)


def _description(conn: RemoteConnection) -> dict[str, Any]:
    """The local description as RTCSessionDescriptionInit, tagged with the attempt number
    (browsers ignore the extra key; our peers use it to drop answers to replaced offers)."""
    desc = conn.pc.localDescription
    return {"type": desc.type, "sdp": desc.sdp, "rtclab": {"attempt": conn.attempt}}


def _attempt_of(sdp: Any, default: int = 0) -> int:
    tag = sdp.get("rtclab") if isinstance(sdp, dict) else None
    attempt = tag.get("attempt") if isinstance(tag, dict) else None
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else default


async def _close_quietly(pc: RTCPeerConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pc.close(), 5.0)
