"""Synthetic media sources: a moving test pattern (frame number and send time drawn in) and a tone.

They pace themselves with the event loop's clock, so a slow consumer never makes them
burst, and they draw with numpy only (no Pillow, no fonts to install).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import math
import time
from typing import Any, Literal

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK_RATE = 90_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_PTIME = 0.020

# 3x5 bitmap font for the characters the overlay needs.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    ":": "000010000010000",
    "#": "101111101111101",
    " ": "000000000000000",
    "-": "000000111000000",
}


@functools.lru_cache(maxsize=512)
def _glyph(char: str, scale: int) -> np.ndarray:
    """One character of the 3x5 font, ``scale`` pixels per dot (cached: drawn every frame)."""
    bits = _GLYPHS.get(char, _GLYPHS[" "])
    glyph = np.array([int(b) for b in bits], dtype=bool).reshape(5, 3)
    return np.kron(glyph, np.ones((scale, scale), dtype=bool)).astype(bool)


def draw_text(plane: np.ndarray, text: str, x: int, y: int, *, scale: int = 2) -> None:
    """Draw ``text`` light-on-dark into a luma ``plane`` (2-D uint8), clipped to its bounds."""
    h, w = 5 * scale, len(text) * 4 * scale
    pad = scale
    y0, x0 = max(0, y - pad), max(0, x - pad)
    y1, x1 = min(plane.shape[0], y + h + pad), min(plane.shape[1], x + w + pad)
    plane[y0:y1, x0:x1] = 16
    for i, char in enumerate(text):
        cx = x + i * 4 * scale
        if char == " " or cx + 3 * scale > plane.shape[1] or y + h > plane.shape[0]:
            continue
        region = plane[y : y + h, cx : cx + 3 * scale]
        region[_glyph(char, scale)] = 235


def rgb_to_yuv420(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited-range Y, U, V planes (chroma subsampled 2x2) of an RGB image."""
    rgb = image.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b

    def sub(plane: np.ndarray) -> np.ndarray:
        out: np.ndarray = plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean(
            axis=(1, 3)
        )
        return out

    return (
        np.clip(y, 0, 255).astype(np.uint8),
        np.clip(sub(u), 0, 255).astype(np.uint8),
        np.clip(sub(v), 0, 255).astype(np.uint8),
    )


class _PacedTrack(MediaStreamTrack):
    """A track whose ``recv`` waits until the next frame is due on the loop's clock."""

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


class TestPatternTrack(_PacedTrack):
    """Moving colour bars with a bouncing box, the frame number and the send time drawn in.

    ``label`` is drawn as well, so a "screen" source looks different from the "camera".
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
    ) -> None:
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError("width and height must be even and at least 16 pixels")
        if not 0 < fps <= 120:
            raise ValueError("fps must be in (0, 120]")
        super().__init__(1.0 / fps)
        self.width, self.height, self.fps, self.style = width, height, fps, style
        xs = np.linspace(0, 1, width, dtype=np.float32)
        if style == "camera":
            bars = np.array(
                [
                    [255, 255, 255],
                    [255, 255, 0],
                    [0, 255, 255],
                    [0, 255, 0],
                    [255, 0, 255],
                    [255, 0, 0],
                    [0, 0, 255],
                    [40, 40, 40],
                ],
                dtype=np.uint8,
            )
            row = bars[np.minimum((xs * len(bars)).astype(int), len(bars) - 1)]
        else:  # a "desktop": grey background with window-like stripes
            row = np.stack([xs * 60 + 90, xs * 60 + 100, xs * 40 + 140], axis=1).astype(np.uint8)
        # Frames are made directly in yuv420p: the encoder then never calls reformat(), which
        # is not thread-safe on a frame shared by several connections' encoder threads.
        self._planes = rgb_to_yuv420(np.repeat(row[np.newaxis, :, :], height, axis=0))
        self._box = max(8, min(width, height) // 6) // 2 * 2
        # One reusable yuv420p buffer (from_ndarray copies it into the frame), with views of
        # its three planes: each frame is drawn in place, no per-frame allocation.
        self._buffer = np.empty(width * height * 3 // 2, dtype=np.uint8)
        n_y, n_c = width * height, width * height // 4
        self._views = (
            self._buffer[:n_y].reshape(height, width),
            self._buffer[n_y : n_y + n_c].reshape(height // 2, width // 2),
            self._buffer[n_y + n_c :].reshape(height // 2, width // 2),
        )

    async def recv(self) -> av.VideoFrame:
        index = await self._next_index()
        for i, (plane, out) in enumerate(zip(self._planes, self._views, strict=True)):
            shift = (index * (2 if i == 0 else 1)) % plane.shape[1]  # scroll right
            if shift:
                out[:, shift:] = plane[:, :-shift]
                out[:, :shift] = plane[:, -shift:]
            else:
                out[:] = plane
        y, u, v = self._views
        # bouncing box: motion keeps the encoder honest (a static frame costs almost no bits)
        span_x, span_y = (self.width - self._box) // 2, (self.height - self._box) // 2
        bx = int(abs((index * 2) % (2 * span_x) - span_x)) * 2
        by = int(abs(index % (2 * span_y) - span_y)) * 2
        y[by : by + self._box, bx : bx + self._box] = 30
        u[by // 2 : (by + self._box) // 2, bx // 2 : (bx + self._box) // 2] = 128
        v[by // 2 : (by + self._box) // 2, bx // 2 : (bx + self._box) // 2] = 128
        scale = max(1, self.height // 120)
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"
        text_h = 16 * scale + 4 * scale
        text_w = (len(stamp) * 4 + 2) * scale
        draw_text(y, f"#{index}", 4, 4, scale=scale)
        draw_text(y, stamp, 4, 4 + 8 * scale, scale=scale)
        u[: (text_h + 4) // 2, : (text_w + 8) // 2] = 128
        v[: (text_h + 4) // 2, : (text_w + 8) // 2] = 128
        frame = av.VideoFrame.from_ndarray(self._buffer.reshape(-1, self.width), format="yuv420p")
        frame.pts = int(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class ToneTrack(_PacedTrack):
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
