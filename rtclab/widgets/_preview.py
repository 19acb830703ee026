"""JPEG snapshots of video frames for widget previews (FFmpeg's mjpeg via PyAV; no Pillow)."""

from __future__ import annotations

import fractions
import functools
from typing import Any

import av
import numpy as np

from ..peer.media import blank_like

JPEG_MAGIC = b"\xff\xd8"


class JpegEncoder:
    """Encodes video frames to JPEG bytes, scaled down to at most ``max_width`` pixels wide.

    Meant to run in a worker thread (``asyncio.to_thread``): :meth:`encode` copies the frame's
    pixels before converting them, so a frame shared with aiortc's encoder threads (a relayed
    local source) is only ever read, never reformatted in place. One encode at a time per
    instance: it keeps one codec context for the current size.
    """

    def __init__(self, max_width: int = 320, quality: int = 5) -> None:
        if max_width < 16:
            raise ValueError("max_width must be >= 16")
        if not 2 <= quality <= 31:
            raise ValueError("quality is the JPEG qscale: 2 (best) to 31 (worst)")
        self.max_width = max_width
        self.quality = quality
        self._codec: Any = None  # av.VideoCodecContext (PyAV's stubs type create() loosely)
        self._size: tuple[int, int] | None = None

    def _context(self, width: int, height: int) -> Any:
        if self._codec is None or self._size != (width, height):
            codec = av.CodecContext.create("mjpeg", "w")
            codec.width, codec.height = width, height
            codec.pix_fmt = "yuvj420p"
            codec.time_base = fractions.Fraction(1, 30)
            codec.qmin = codec.qmax = self.quality
            self._codec, self._size = codec, (width, height)
        return self._codec

    def encode(self, frame: av.VideoFrame, *, blank: bool = False) -> bytes:
        """One JPEG of ``frame`` (black if ``blank``: what a remote sees while video is muted)."""
        if blank:
            blanked = blank_like(frame)
            assert isinstance(blanked, av.VideoFrame)
            frame = blanked
        if frame.format.name in ("yuv420p", "yuvj420p"):
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
        else:  # not shared with encoder threads in practice (decoded frames are yuv420p)
            copy = frame.reformat(format="yuv420p")
        width, height = _scaled(copy.width, copy.height, self.max_width)
        image = copy.reformat(width=width, height=height, format="yuvj420p")
        codec = self._context(width, height)
        return b"".join(bytes(packet) for packet in codec.encode(image))


def _scaled(width: int, height: int, max_width: int) -> tuple[int, int]:
    if width <= max_width:
        return width, height
    return max_width // 2 * 2, max(2, round(height * max_width / width / 2) * 2)


@functools.lru_cache(maxsize=4)
def placeholder_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A dark grey frame shown until the first real one (so the image has a size at once)."""
    data = np.full(height * width * 3 // 2, 128, dtype=np.uint8)
    data[: height * width] = 48
    frame = av.VideoFrame.from_ndarray(data.reshape(-1, width), format="yuv420p")
    return JpegEncoder(max_width=width).encode(frame)
