"""Record tracks to mp4/webm with the encoding off the event loop.

aiortc's ``MediaRecorder`` encodes on the event loop (measured while recording: loop-lag
p99 12-64 ms, max 230 ms; an mp4 ``stop()`` blocks ~300 ms). Here the loop only pulls
frames (cheap) and hands them to a writer thread that owns the container: encoding, muxing
and the final flush all happen there. PyAV releases the GIL while libav encodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger(__name__)

#: container suffix -> (video codec, audio codec)
CODECS = {
    ".mp4": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".webm": ("libvpx", "libopus"),
}

#: Encoder options for a live recording: keep up with real time rather than squeeze bits.
OPTIONS = {
    "libx264": {"preset": "veryfast", "tune": "zerolatency"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
}

_STOP = object()


@dataclass
class RecordingStats:
    """What went into the file, and what had to be dropped (never silently)."""

    frames: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    # skipped: a frame whose timestamp did not increase, or a packet the muxer refused
    stale: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class Recorder:
    """Pulls frames from tracks on the loop; a thread encodes and muxes them.

    Streams are created when each track's first frame arrives (the video size is only known
    then); frames that arrive before every track has shown up wait in the queue. The queue
    is bounded: if the writer cannot keep up, frames are dropped and counted in
    :attr:`stats`.
    """

    def __init__(self, path: str | Path, *, max_queue: int = 240, fps: int = 30) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CODECS:
            raise ValueError(f"unsupported container {suffix!r}: use one of {sorted(CODECS)}")
        self._codecs = CODECS[suffix]
        self._fps = fps
        self._tracks: list[MediaStreamTrack] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[None] | None = None
        self.stats = RecordingStats()

    def add_track(self, track: MediaStreamTrack) -> None:
        if self._thread is not None:
            raise RuntimeError("add tracks before start()")
        if track.kind not in ("audio", "video"):
            raise ValueError(f"cannot record a {track.kind!r} track")
        if any(t.kind == track.kind for t in self._tracks):
            raise ValueError(f"already recording a {track.kind} track")
        self._tracks.append(track)

    async def start(self) -> None:
        if not self._tracks:
            raise RuntimeError("no track to record: add_track() first")
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done = loop.create_future()
        kinds = [t.kind for t in self._tracks]
        self._thread = threading.Thread(
            target=self._write, args=(loop, kinds), name=f"rtclab-recorder:{self.path.name}",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        self._tasks = [asyncio.create_task(self._pull(t)) for t in self._tracks]

    async def stop(self) -> RecordingStats:
        """Stop pulling, let the thread flush the encoders and close the file."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._thread is not None and self._done is not None:
            # a writer that died (error) reads nothing: never wait on its full queue
            await asyncio.to_thread(self._put_stop, self._thread)
            await self._done
            self._thread = None
        for track in self._tracks:
            track.stop()
        if self.stats.error:
            raise RuntimeError(f"recording {self.path} failed: {self.stats.error}")
        return self.stats

    def _put_stop(self, thread: threading.Thread) -> None:
        while thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=0.1)
                return

    async def _pull(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        dropped = self.stats.dropped
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                try:
                    self._queue.put_nowait((kind, frame))
                except queue.Full:
                    dropped[kind] = dropped.get(kind, 0) + 1

    # --- writer thread ----------------------------------------------------------------------

    def _write(self, loop: asyncio.AbstractEventLoop, kinds: list[str]) -> None:
        error: str | None = None
        try:
            self._encode_all(kinds)
        except Exception as exc:  # reported by stop(), never lost
            log.exception("recorder for %s failed", self.path)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.stats.error = error
            if self._done is not None:
                loop.call_soon_threadsafe(_resolve, self._done)

    def _encode_all(self, kinds: list[str]) -> None:
        container: Any = None
        streams: dict[str, Any] = {}
        pending: list[tuple[str, Any]] = []
        last_pts: dict[str, int] = {}
        muxed: dict[str, tuple[Any, Any]] = {}  # kind -> last muxed packet's (pts, dts)
        refused: dict[str, int] = {}  # consecutive refusals per kind
        frames = self.stats.frames
        video_codec, audio_codec = self._codecs
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                kind, frame = item
                if container is None:
                    pending.append((kind, frame))
                    seen = {k for k, _ in pending}
                    if not set(kinds) <= seen and len(pending) < self._queue.maxsize:
                        continue
                    container = av.open(str(self.path), mode="w")
                    for k, first in pending:
                        if k in streams:
                            continue
                        if k == "video":
                            stream = container.add_stream(video_codec, rate=self._fps)
                            stream.width, stream.height = first.width, first.height
                            stream.pix_fmt = "yuv420p"
                            stream.options = dict(OPTIONS.get(video_codec, {}))
                            if first.time_base is not None:
                                # encode in the frames' own clock (90 kHz for RTP): in 1/fps
                                # two frames arriving closer than a frame interval round to
                                # one timestamp and the muxer refuses the second (EINVAL)
                                stream.codec_context.time_base = first.time_base
                        else:
                            stream = container.add_stream(audio_codec, rate=first.sample_rate)
                        streams[k] = stream
                    batch, pending = pending, []
                else:
                    batch = [(kind, frame)]
                for k, f in batch:
                    stream = streams.get(k)
                    if stream is None:
                        continue  # a track that showed up after the header was written
                    if f.pts is not None:
                        # a decoder can hand out two frames with one timestamp (after loss
                        # or a keyframe request); the muxer refuses a timestamp that does
                        # not increase (EINVAL) and the whole file would be lost
                        if k in last_pts and f.pts <= last_pts[k]:
                            self.stats.stale[k] = self.stats.stale.get(k, 0) + 1
                            continue
                        last_pts[k] = f.pts
                    if k == "video" and (f.width, f.height) != (stream.width, stream.height):
                        f = f.reformat(width=stream.width, height=stream.height)
                    for packet in stream.encode(f):
                        refusal = _mux(container, packet, k, f, muxed.get(k))
                        if refusal is None:
                            muxed[k] = (packet.pts, packet.dts)
                            refused[k] = 0
                            continue
                        self.stats.stale[k] = self.stats.stale.get(k, 0) + 1
                        refused[k] = refused.get(k, 0) + 1
                        if refused[k] >= 30:
                            raise RuntimeError(refusal)
                    frames[k] = frames.get(k, 0) + 1
            for stream in streams.values():
                for packet in stream.encode(None):
                    container.mux(packet)
        finally:
            if container is not None:
                container.close()


def _mux(container: Any, packet: Any, kind: str, frame: Any, last: Any) -> str | None:
    """Mux one packet; if the muxer refuses it, log and return why (with the timestamps).

    Losing one packet beats losing the file; a stream the muxer keeps refusing still fails
    the recording (see the caller). Refusals were EINVAL for a timestamp that did not
    increase, seen in CI before video was encoded in the frames' own clock.
    """
    try:
        container.mux(packet)
    except av.FFmpegError as exc:
        detail = (
            f"{exc} muxing {kind}: packet pts={packet.pts} dts={packet.dts} "
            f"tb={packet.time_base} after {last}; frame pts={frame.pts} tb={frame.time_base}"
        )
        log.warning("recorder skipped a packet: %s", detail)
        return detail
    return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def record_tracks(
    tracks: Sequence[MediaStreamTrack], path: str | Path, duration: float
) -> Path:
    """Write ``tracks`` to ``path`` for ``duration`` seconds (encoding off the loop)."""
    if duration <= 0:
        raise ValueError("duration must be positive (seconds)")
    recorder = Recorder(path)
    for track in tracks:
        recorder.add_track(track)
    await recorder.start()
    try:
        await asyncio.sleep(duration)
    finally:
        await recorder.stop()
    return recorder.path
