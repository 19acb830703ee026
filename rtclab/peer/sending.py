"""What a peer sends: media sources per connection, live media control, chat and cursors.

A mixin of :class:`~rtclab.peer.Peer` (one concern per module; the peer's state is declared
in :mod:`._base`). One source feeds every remote through a relay; each connection gets its
own counted copy (:class:`_CountingTrack`), so swapping, muting and capping reach them all.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path
from typing import Any, Literal

import av
from aiortc import MediaStreamTrack

from .._compat.aiortc import cap_encoder_bitrate
from ..model import ConnectionCounters
from ._base import PeerBase, VideoSource
from .connection import ChatMessage, RemoteConnection
from .feedback import count_feedback_received
from .media import VIDEO_CLOCK_RATE, TestPatternTrack, blank_like


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


class MediaControl(PeerBase):
    """Sending side of a peer: sources, replaceTrack, mute, bitrate cap, chat, cursors."""

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
            count_feedback_received(proxy.sender, conn.counters.rtp_stream("outbound", kind))

    def _sender_track(self, conn: RemoteConnection, source: MediaStreamTrack) -> _CountingTrack:
        """This connection's own relayed copy of ``source``: one source feeds every remote."""
        relayed = self._relay.subscribe(source)
        return _CountingTrack(relayed, conn.counters, self.muted, self.max_bitrate)

    def _current_video(self) -> MediaStreamTrack | None:
        if self.video_source == "screen":
            return self._screen
        return self._camera

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

    async def _record(
        self, remote: str, path: str | Path, duration: float, kinds: list[str]
    ) -> Path:
        from .recorder import record_tracks

        conn = self.connections.get(remote)
        if conn is None:
            raise LookupError(f"{self.name} has no connection to {remote!r}")
        tracks = [conn.subscribe(k) for k in kinds if k in conn.remote_tracks]
        if not tracks:
            raise LookupError(f"{remote} sends none of {kinds}")
        self._emit(remote, "recording", str(path))
        return await record_tracks(tracks, path, duration)

    def latest_frame(self, remote: str) -> av.VideoFrame | None:
        conn = self.connections.get(remote)
        return None if conn is None else conn.latest_frame

    def preview_track(self) -> MediaStreamTrack | None:
        """A relayed copy of the video source being sent, for a local preview; ``stop()`` it.

        Relayed like every connection's copy, so a preview never takes frames from a sender.
        """
        source = self._current_video()
        return None if source is None else self._relay.subscribe(source)
