"""Peer: one identity in a signaling room, one aiortc RTCPeerConnection per remote (a mesh).

This module holds the peer's life cycle (join, leave, wait, close) and its connections;
the other concerns are mixins: :mod:`.negotiation` (offer/answer, candidates),
:mod:`.sending` (sources, media control, chat), :mod:`.recovery` (liveness, rebuilding),
with failure reasons from the pure :mod:`.diagnosis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import av
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from ..ice.config import IceConfig
from ..ice.inspect import candidate_rows, candidates_frame, selected_candidate_pair
from ..model import ConnectionCounters, EventListener
from ..qoe.frames import FrameTracker
from ..signaling.client import SignalingClient, SignalingError
from ._base import VideoSource
from .channels import CHAT, CURSORS, Channel
from .connection import (
    ChatMessage,
    PeerEvent,
    RemoteConnection,
    Role,
    count_rtp,
    sdp_candidate_count,
)
from .diagnosis import ConnectionFacts, diagnose
from .estimation import check_estimator_factory, estimates_frame, install_estimator
from .media import TestPatternTrack, ToneTrack, luma_plane
from .negotiation import Negotiation
from .recovery import Recovery
from .relay import SourceRelay
from .resilience import Resilience
from .scoring import scoring
from .sending import MediaControl

if TYPE_CHECKING:
    import pandas as pd

    from ..cc import EstimatorFactory
    from ..net.base import NetworkAttachment

__all__ = ["ChatMessage", "Peer", "PeerEvent", "RemoteConnection"]

log = logging.getLogger(__name__)

_UNTAGGED_NOTICE = 30  # untagged frames, none tagged, before the "video-untagged" event


class Peer(Negotiation, MediaControl, Recovery):
    """A lab participant: joins ``room`` on a signaling server and meshes with everyone there.

    Media is synthetic by default (a moving test pattern and a tone), so a peer needs no
    camera; ``video=False`` / ``audio=False`` / ``data=False`` turn sending parts off. As an
    offerer it still asks to receive audio and video (recvonly m-lines) unless
    ``receive=False``, so a viewer that sends nothing can join and watch.

    ``estimator`` (a :class:`~rtclab.cc.BandwidthEstimator` class or factory, e.g.
    :class:`~rtclab.cc.LossBasedAimd`) replaces aiortc's bandwidth estimator on every video
    this peer *receives*: its estimate goes back as REMB and sets the remote sender's
    encoder target. ``None`` keeps aiortc's own.

    With ``qoe`` (default) the test pattern carries a frame tag and every received video
    frame's tag is read: ``frame_rows`` (the newest ``keep_frames``), freeze counters and the
    samples' QoE columns (docs/qoe.md). The screen source is tagged too; a file is not.
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
        estimator: EstimatorFactory | None = None,
        qoe: bool = True,
        keep_frames: int = 2_000,
    ) -> None:
        self.name = name
        self.estimator = check_estimator_factory(estimator)
        # tag the test pattern and read the tags of received video (rtclab.qoe)
        self.qoe = qoe
        #: the newest ``frames`` rows (columns: rtclab.qoe.FRAME_COLUMNS), oldest first;
        #: ``frames_total`` counts every row ever made, so a poller can take only new ones
        self.frame_rows: deque[dict[str, Any]] = deque(maxlen=keep_frames)
        self.frames_total = 0
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
        self._relay = SourceRelay()  # local sources, read when an encoder asks
        self._camera: MediaStreamTrack | None = (
            TestPatternTrack(width, height, fps, tagged=qoe) if video else None
        )
        self._screen: MediaStreamTrack | None = None
        self.video_source: VideoSource | None = "camera" if video else None
        self._audio: MediaStreamTrack | None = ToneTrack() if audio else None
        self._size = (width, height)
        self._fps = fps
        self._chat_seq = 0
        self.muted: dict[str, bool] = {"audio": False, "video": False}
        self.max_bitrate: dict[str, int | None] = {"video": None}

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
                self._timing(conn, "dtls-connect-ms", conn.ice_connected_at, conn.connected_at)
                self._report_pair(conn)
                if conn.attempt > 0:
                    self._emit(remote, "recovered", f"new connection (attempt {conn.attempt})")
                if self.resilience.enabled:
                    conn._spawn(self._monitor(conn))
            elif state == "failed" and conn.failure_reason is None:
                self._fail(conn, self._diagnose(conn, "ICE reported failure"))

        @pc.on("iceconnectionstatechange")
        def _on_ice() -> None:
            state = pc.iceConnectionState
            self._emit(remote, "ice-connection-state", state)
            now = time.monotonic()
            if state == "checking" and conn.ice_checking_at is None:
                conn.ice_checking_at = now
            elif state in ("connected", "completed") and conn.ice_connected_at is None:
                conn.ice_connected_at = now
                self._timing(conn, "ice-connect-ms", conn.ice_checking_at, now)

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
                    count_rtp(transceiver, conn.counters, track.kind)
                    if track.kind == "video" and self.estimator is not None:
                        self._estimate_on(conn, transceiver.receiver, self.estimator)
            conn.remote_tracks[track.kind] = track
            self._emit(remote, "track", track.kind)
            conn._spawn(self._consume(conn, track))

        @pc.on("datachannel")
        def _on_datachannel(channel: Any) -> None:
            self._attach_channel(conn, channel)

        conn._spawn(self._watchdog(conn))
        self._emit(remote, "connection-created", role)
        return conn

    def _estimate_on(
        self, conn: RemoteConnection, receiver: Any, factory: EstimatorFactory
    ) -> None:
        def failed(message: str) -> None:
            self._emit(conn.remote, "error", message)

        feedback = install_estimator(receiver, factory, failed)
        if feedback is not None:
            conn.estimation = feedback
            self._emit(conn.remote, "estimator", feedback.name)

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
        """Read a remote track (its only reader) so frames are counted and handed to its
        copies (``conn.subscribe``), the latest video frame is kept and, with
        ``qoe``, each video frame's tag is read into ``frames`` rows (:mod:`rtclab.qoe`)."""
        received = conn.counters.frames_received
        kind = track.kind
        tracker = None
        if self.qoe and kind == "video":
            tracker = FrameTracker(self.name, conn.remote, defer_scores=True)
        deliver = conn.taps.deliver
        try:
            while True:
                frame = await track.recv()
                received[kind] = received.get(kind, 0) + 1
                deliver(track, frame)
                if isinstance(frame, av.VideoFrame):
                    conn.latest_frame = frame
                    if conn.first_frame_at is None:
                        conn.first_frame_at = time.monotonic()
                        self._timing(conn, "first-frame-ms", conn.connected_at, conn.first_frame_at)
                    if tracker is not None:
                        self._track_frame(conn, tracker, frame)
        except MediaStreamError:
            return
        finally:
            conn.taps.end(track)

    def _timing(
        self, conn: RemoteConnection, event: str, start: float | None, end: float | None
    ) -> None:
        """Emit one connection timing in ms (rtcstats' set-up phases): ``signaling-ms``
        (offer sent -> answer applied, offerer only), ``ice-connect-ms`` (ICE checking ->
        connected), ``dtls-connect-ms`` (ICE connected -> DTLS connected, i.e.
        ``connectionState`` connected) and ``first-frame-ms`` (connected -> first decoded
        video frame). Nothing when a phase's start was not seen."""
        if start is not None and end is not None and end >= start:
            self._emit(conn.remote, event, round((end - start) * 1000.0, 1))

    def _track_frame(self, conn: RemoteConnection, tracker: FrameTracker, frame: Any) -> None:
        luma = luma_plane(frame)
        rows = tracker.on_frame(luma, time.time())
        job, tracker.pending = tracker.pending, None
        executor = scoring.start() if job is not None else None
        if job is not None and executor is not None:
            # PSNR/SSIM take milliseconds: in rtclab's own thread (numpy lets go of the GIL;
            # aiortc's encoders keep the default executor), at most a few queued, so scoring
            # yields to media when the machine is saturated; the row gets its scores later
            future = asyncio.get_running_loop().run_in_executor(
                executor, scoring.run, tracker, luma.copy(), job
            )

            def scored(done: asyncio.Future[dict[str, float | None]]) -> None:
                if not done.cancelled() and done.exception() is None:
                    job.row.update(done.result())

            future.add_done_callback(scored)
        if rows:
            self.frame_rows.extend(rows)
            self.frames_total += len(rows)
            conn.recent_latency_ms.extend(
                row["latency_ms"] for row in rows if row.get("latency_ms") is not None
            )
        counters = conn.counters
        counters.frames_tracked = True
        counters.freeze_count = tracker.freezes.freeze_count
        counters.total_freezes_duration_ms = tracker.freezes.total_freezes_duration_ms
        counters.frames_untagged = tracker.frames_untagged
        if tracker.freeze_ms is not None:
            self._emit(conn.remote, "freeze", round(tracker.freeze_ms, 1))
        if tracker.frames_untagged == _UNTAGGED_NOTICE and not tracker.frames_tagged:
            self._emit(conn.remote, "video-untagged", "no frame tag: no latency or quality")

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
        """Name the first missing step, so a failure says what to fix (see :mod:`.diagnosis`)."""
        pc = conn.pc
        # every TURN server's own reason: with several servers each may fail differently
        turn_failures = [f.message for f in conn.gathering.failures if f.kind.startswith("turn")]
        facts = ConnectionFacts(
            remote=conn.remote,
            role=conn.role,
            has_local_description=pc.localDescription is not None,
            has_remote_description=pc.remoteDescription is not None,
            local_candidates=sdp_candidate_count(pc.localDescription),
            remote_candidates=sdp_candidate_count(pc.remoteDescription) + conn.trickled_candidates,
            turn_failure="; ".join(turn_failures) or None,
            ice_transport_policy=self.ice.ice_transport_policy,
            has_turn=self.ice.has_turn,
            interfaces=self.ice.interfaces,
        )
        return diagnose(facts, what)

    def _fail(self, conn: RemoteConnection, reason: str) -> None:
        conn.failure_reason = reason
        conn.finished.set()
        self._emit(conn.remote, "failed", reason)
        conn._spawn(self._close_pc(conn.pc))

    def _report_pair(self, conn: RemoteConnection) -> None:
        pair = selected_candidate_pair(conn.pc)
        if pair is not None:
            self._emit(conn.remote, "selected-pair", pair.describe())

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

    # --- ICE inspection ---------------------------------------------------------------------

    def candidates(self) -> pd.DataFrame:
        """Every local and remote candidate of every connection, with timing and the
        selected pair marked (columns: :data:`rtclab.ice.inspect.CANDIDATE_COLUMNS`)."""
        return candidates_frame(self.candidate_records())

    def candidate_records(self) -> list[dict[str, Any]]:
        """:meth:`candidates` as plain rows (what a lab worker sends to the kernel)."""
        rows: list[dict[str, Any]] = []
        for remote, conn in list(self.connections.items()):
            rows += candidate_rows(conn.pc, peer=self.name, remote=remote, log=conn.gathering)
        return rows

    def estimates(self) -> pd.DataFrame:
        """Every estimate this peer's estimators sent as REMB, one row per REMB (columns
        ``t, peer, remote, estimator, estimate_kbps``); empty without ``estimator=``."""
        return estimates_frame(self.estimate_records())

    def estimate_records(self, after: float = 0.0) -> list[dict[str, Any]]:
        """:meth:`estimates` as plain rows, only those later than ``after`` (unix time):
        a lab worker streams the new ones without walking the whole history each time."""
        rows: list[dict[str, Any]] = []
        for remote, conn in list(self.connections.items()):
            if (est := conn.estimation) is None:
                continue
            new = list(itertools.takewhile(lambda e: e[0] > after, reversed(est.history)))
            rows += [{"t": t, "peer": self.name, "remote": remote, "estimator": est.name,
                      "estimate_kbps": bps / 1000} for t, bps in reversed(new)]  # fmt: skip
        return rows

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


async def _close_quietly(pc: RTCPeerConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pc.close(), 5.0)
