"""rtclab's synthetic test pattern, drawn deterministically from a frame id and capture time.

The sender draws it (:class:`rtclab.peer.media.TestPatternTrack`) and the receiver draws the
same picture again from the tag it read, as the reference for PSNR and SSIM. numpy only
(no Pillow, no fonts to install).
"""

from __future__ import annotations

import functools
import time
from typing import Literal

import numpy as np

from .tag import SOURCE_CAMERA, SOURCE_SCREEN, FrameTag, stamp_tag, strip_height

__all__ = ["TestPattern", "draw_text", "rgb_to_yuv420"]

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


class TestPattern:
    """Moving colour bars with a bouncing box, the frame number, the capture time and the tag.

    :meth:`draw` is a pure function of (frame id, capture ms): drawn twice with the same
    two numbers, the planes are identical, which is what makes a reference possible.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        width: int,
        height: int,
        style: Literal["camera", "screen"] = "camera",
        *,
        tagged: bool = True,
    ) -> None:
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError("width and height must be even and at least 16 pixels")
        self.width, self.height, self.style, self.tagged = width, height, style, tagged
        self.source = SOURCE_CAMERA if style == "camera" else SOURCE_SCREEN
        if tagged and strip_height(width) > height // 2:
            raise ValueError(f"a {width}x{height} frame is too flat for the tag strip")
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
        self._planes = rgb_to_yuv420(np.repeat(row[np.newaxis, :, :], height, axis=0))
        self._box = max(8, min(width, height) // 6) // 2 * 2
        self._strip = (strip_height(width) + 1) // 2 * 2 if tagged else 0

    def new_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Empty Y, U, V planes of this pattern's size."""
        w, h = self.width, self.height
        return (
            np.empty((h, w), np.uint8),
            np.empty((h // 2, w // 2), np.uint8),
            np.empty((h // 2, w // 2), np.uint8),
        )

    def draw(
        self, index: int, capture_ms: int, out: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> None:
        """Draw frame ``index`` captured at ``capture_ms`` (ms since the epoch) into ``out``."""
        for i, (plane, view) in enumerate(zip(self._planes, out, strict=True)):
            shift = (index * (2 if i == 0 else 1)) % plane.shape[1]  # scroll right
            if shift:
                view[:, shift:] = plane[:, :-shift]
                view[:, :shift] = plane[:, -shift:]
            else:
                view[:] = plane
        y, u, v = out
        # bouncing box: motion keeps the encoder honest (a static frame costs almost no bits)
        span_x = (self.width - self._box) // 2
        span_y = (self.height - self._box - self._strip) // 2
        bx = int(abs((index * 2) % (2 * span_x) - span_x)) * 2
        by = int(abs(index % (2 * span_y) - span_y)) * 2 if span_y > 0 else 0
        y[by : by + self._box, bx : bx + self._box] = 30
        u[by // 2 : (by + self._box) // 2, bx // 2 : (bx + self._box) // 2] = 128
        v[by // 2 : (by + self._box) // 2, bx // 2 : (bx + self._box) // 2] = 128
        scale = max(1, self.height // 120)
        seconds = capture_ms // 1000
        stamp = time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{capture_ms % 1000:03d}"
        text_h = 16 * scale + 4 * scale
        text_w = (len(stamp) * 4 + 2) * scale
        draw_text(y, f"#{index}", 4, 4, scale=scale)
        draw_text(y, stamp, 4, 4 + 8 * scale, scale=scale)
        u[: (text_h + 4) // 2, : (text_w + 8) // 2] = 128
        v[: (text_h + 4) // 2, : (text_w + 8) // 2] = 128
        if self.tagged:
            stamp_tag(y, FrameTag(index, capture_ms, self.source))
            u[-self._strip // 2 :] = 128
            v[-self._strip // 2 :] = 128

    def luma(self, index: int, capture_ms: int) -> np.ndarray:
        """The Y plane of frame ``index``: the reference a received frame is compared with."""
        planes = self.new_planes()
        self.draw(index, capture_ms, planes)
        return planes[0]
