"""Synthetic media sources: a moving, tagged test pattern and a tone.

They pace themselves with the event loop's clock, so a slow consumer never makes them
burst, and they draw with numpy only (no Pillow, no fonts to install).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from typing import Any, Literal

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..qoe.pattern import TestPattern

VIDEO_CLOCK_RATE = 90_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_PTIME = 0.020


class PacedTrack(MediaStreamTrack):
    """A track whose ``recv`` waits until the next frame is due on the loop's clock.

    A consumer that falls behind gets the missed frames at once (a recorder keeps every
    one); a live consumer calls :meth:`skip_missed` first, as from a camera.
    """

    def __init__(self, period: float) -> None:
        super().__init__()
        self._period = period
        self._start: float | None = None
        self._index = 0

    async def _next_index(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            due = self._start + self._index * self._period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        index = self._index
        self._index += 1
        return index

    def skip_missed(self) -> None:
        """Forget the frames due but not taken: the next ``recv`` gives the one due now
        (frame ids jump over the rest), never a late burst of them."""
        if self._start is not None:
            due_now = int((asyncio.get_running_loop().time() - self._start) / self._period)
            self._index = max(self._index, due_now)


class TestPatternTrack(PacedTrack):
    """Moving colour bars with a bouncing box, the frame number and the capture time drawn
    in, and the frame tag (:mod:`rtclab.qoe.tag`) along the bottom unless ``tagged=False``.

    The picture is a pure function of (frame id, capture time) (:class:`TestPattern`), so a
    receiver that reads the tag can draw the reference for PSNR/SSIM. A "screen" style looks
    different from the "camera".
    """

    kind = "video"
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        fps: float = 15.0,
        *,
        style: Literal["camera", "screen"] = "camera",
        tagged: bool = True,
    ) -> None:
        if not 0 < fps <= 120:
            raise ValueError("fps must be in (0, 120]")
        self.pattern = TestPattern(width, height, style, tagged=tagged)
        super().__init__(1.0 / fps)
        self.width, self.height, self.fps, self.style = width, height, fps, style
        # Frames are made directly in yuv420p: the encoder then never calls reformat(), which
        # is not thread-safe on a frame shared by several connections' encoder threads.

    async def recv(self) -> av.VideoFrame:
        index = await self._next_index()
        # drawn straight into the new frame's planes (views over their buffers, rows padded
        # to line_size): no intermediate array to copy, which cost as much as the drawing
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        y, u, v = (plane_pixels(p) for p in frame.planes)
        # the wall clock (not the loop's): receivers in other processes and browsers share it
        self.pattern.draw(index, int(time.time() * 1000), (y, u, v))
        frame.pts = int(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class ToneTrack(PacedTrack):
    """A sine tone in 20 ms mono s16 frames at 48 kHz (what Opus wants)."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, volume: float = 0.3) -> None:
        super().__init__(AUDIO_PTIME)
        self.frequency = frequency
        self.volume = volume
        self._samples = int(AUDIO_SAMPLE_RATE * AUDIO_PTIME)

    async def recv(self) -> av.AudioFrame:
        index = await self._next_index()
        start = index * self._samples
        t = (np.arange(start, start + self._samples) / AUDIO_SAMPLE_RATE).astype(np.float64)
        wave = np.sin(2 * math.pi * self.frequency * t) * self.volume * 32767
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = start
        frame.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
        return frame


def plane_pixels(plane: Any) -> np.ndarray:
    """An 8-bit plane's pixels as a (height, width) view: its rows without their padding."""
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    view: np.ndarray = rows[: plane.height, : plane.width]
    return view


def luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a decoded frame as a (height, width) array, without a copy when the
    frame is planar YUV (what aiortc's decoders give)."""
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12"):
        return plane_pixels(frame.planes[0])
    gray: np.ndarray = frame.to_ndarray(format="gray")
    return gray


def blank_like(frame: av.VideoFrame | av.AudioFrame) -> av.VideoFrame | av.AudioFrame:
    """A black video frame or a silent audio frame with ``frame``'s size and timing."""
    blank: av.VideoFrame | av.AudioFrame
    if isinstance(frame, av.VideoFrame):
        w, h = frame.width, frame.height
        data = np.full(h * w * 3 // 2, 128, dtype=np.uint8)
        data[: h * w] = 16
        blank = av.VideoFrame.from_ndarray(data.reshape(-1, w), format="yuv420p")
    else:
        blank = av.AudioFrame.from_ndarray(
            np.zeros((1, frame.samples), dtype=np.int16), format="s16", layout="mono"
        )
        blank.sample_rate = frame.sample_rate
    blank.pts = frame.pts
    blank.time_base = frame.time_base
    return blank


class FileTrack(MediaStreamTrack):
    """Video from a media file, played in a loop.

    aiortc's ``MediaPlayer(loop=True)`` can still end a track at end of file (seen here with
    short H.264 clips), and an ended track stops the sender for good; this re-opens the file
    instead. Timestamps restart each loop: the peer re-stamps frames at send time anyway.
    """

    kind = "video"

    def __init__(self, path: str, *, loop: bool = True) -> None:
        super().__init__()
        from aiortc.contrib.media import MediaPlayer

        self.path = path
        self.loop = loop

        def open_player() -> Any:
            return MediaPlayer(path)

        self._open = open_player
        player = self._open()  # fail now, with the file's name, if it cannot be read
        if player.video is None:
            raise ValueError(f"{path} has no video stream")
        self._track: MediaStreamTrack | None = player.video

    async def recv(self) -> av.VideoFrame:
        while self.readyState == "live":
            track = self._track
            if track is None:
                track = self._open().video
                if track is None:
                    break
                self._track = track
            try:
                frame = await track.recv()
            except MediaStreamError:
                track.stop()
                self._track = None
                if not self.loop:
                    break
                continue
            assert isinstance(frame, av.VideoFrame)
            return frame
        self.stop()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if self._track is not None:
            self._track.stop()
