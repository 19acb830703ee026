"""The frame tag: frame id and capture time as a strip of black and white blocks.

A synthetic source stamps each frame; the receiver reads the strip back from the decoded
picture, so latency and lost frames are measured per frame, end to end, through whatever
the encoder and the network did to it (libwebrtc's end-to-end tests tag frames the same
way). Pure numpy on 2-D luma planes: no av, no I/O.

Layout: 80 bits in 2 rows of 40 cells along the bottom edge, each cell ``width/40`` pixels
wide and twice that tall (4x8 px at 160x120, 8x16 px at 320x240: the strip is the bottom
2/15 of a 4:3 frame), so it scales with the frame and with a receiver-side rescale. Bits:
frame id (16), capture time in ms modulo 2**24 (24), source (4), version (4), then the
CRC-32 of those 6 bytes. A cell is read from its inner half. Up to two cells near the
midpoint are tried both ways and up to two clearly wrong cells corrected (CRC-32 has a
Hamming distance of 6 here, so that leaves room to detect more); anything else that fails
the CRC is rejected: a damaged strip is rejected, never misread. Frame ids and times wrap
and are unwrapped by the receiver (:func:`unwrap_capture_ms`, :class:`FrameTracker`).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ID_MODULUS",
    "SOURCE_BROWSER",
    "SOURCE_CAMERA",
    "SOURCE_SCREEN",
    "TIME_MODULUS",
    "FrameTag",
    "read_tag",
    "stamp_tag",
    "strip_height",
    "unwrap_capture_ms",
]

COLUMNS = 40
ROWS = 2
BITS = COLUMNS * ROWS
#: cells are twice as tall as wide: square ones came through a fast-moving VP8 stream
#: stale (the previous frame's bit) on about 1 frame in 20, these on 1 in 150 or fewer
TALL = 2
#: cells near the midpoint are tried both ways; up to two clearly wrong cells are corrected
MAX_ERASURES = 2
MAX_FLIPS = 2
VERSION = 1
ID_MODULUS = 1 << 16
TIME_MODULUS = 1 << 24  # ms: 4.66 hours
#: what drew the picture: the receiver regenerates the reference of rtclab's own patterns
SOURCE_CAMERA = 1  # TestPatternTrack(style="camera")
SOURCE_SCREEN = 2  # TestPatternTrack(style="screen")
SOURCE_BROWSER = 3  # the browser client's canvas (no reference picture)
BLACK, WHITE = 16, 235  # limited-range luma
_LEVELS = np.array([BLACK, WHITE], dtype=np.uint8)
#: a cell whose mean is within this of the midpoint is unreadable (the read fails)
MARGIN = 40.0
_MID = (BLACK + WHITE) / 2
# a clock up to this far behind the sender's still unwraps to a (negative) latency
_SKEW_MS = 60_000


@dataclass(frozen=True)
class FrameTag:
    """What a strip carries: ``frame_id`` and ``capture_ms`` are modulo their ranges."""

    frame_id: int
    capture_ms: int
    source: int


def strip_height(width: int) -> int:
    """Pixel rows the strip covers at the bottom of a ``width``-wide frame."""
    return round(ROWS * TALL * width / COLUMNS)


def _bits(tag: FrameTag) -> np.ndarray:
    payload = (
        (tag.frame_id % ID_MODULUS).to_bytes(2, "big")
        + (tag.capture_ms % TIME_MODULUS).to_bytes(3, "big")
        + bytes([(tag.source & 0xF) << 4 | VERSION])
    )
    data = payload + zlib.crc32(payload).to_bytes(4, "big")
    bits: np.ndarray = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    return bits.reshape(ROWS, COLUMNS)


@functools.lru_cache(maxsize=64)
def _edges(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell boundaries: x of the 41 column edges, y of the 3 row edges (bottom-anchored)."""
    xs = np.rint(np.arange(COLUMNS + 1) * width / COLUMNS).astype(int)
    cell = width / COLUMNS
    ys = np.rint(height - (ROWS - np.arange(ROWS + 1)) * cell * TALL).astype(int)
    return xs, ys


@functools.lru_cache(maxsize=64)
def _stamp_layout(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges and, for each pixel column of the strip, the index of its cell."""
    xs, ys = _edges(width, height)
    return xs, ys, np.repeat(np.arange(COLUMNS), np.diff(xs))


@functools.lru_cache(maxsize=64)
def _inner(
    width: int, height: int
) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray, np.ndarray]:
    """Each cell's inner half: the row range of each strip row, the column ranges, and the
    pixel count of each cell's inner part (ROWS x COLUMNS)."""
    cell = width / COLUMNS
    half = max(1.0, cell / 2)
    centres_y = height - (ROWS - np.arange(ROWS) - 0.5) * cell * TALL
    rows = []
    for centre in centres_y:
        top = max(0, round(centre - half * TALL / 2))
        rows.append((top, min(height, max(top + 1, round(centre + half * TALL / 2)))))
    centres_x = (np.arange(COLUMNS) + 0.5) * cell
    starts = np.clip(np.rint(centres_x - half / 2), 0, width - 1).astype(int)
    ends = np.maximum(starts + 1, np.clip(np.rint(centres_x + half / 2), 0, width).astype(int))
    counts = np.array(
        [[(b - t) * (e - s) for s, e in zip(starts, ends, strict=True)] for t, b in rows]
    )
    return rows, starts, ends, counts.astype(np.float64)


def stamp_tag(luma: np.ndarray, tag: FrameTag) -> None:
    """Draw ``tag``'s strip into the bottom rows of a luma plane, in place.

    Callers set the chroma under the strip to neutral (128) so it stays black and white.
    """
    height, width = luma.shape
    if strip_height(width) > height // 2:
        raise ValueError(f"a {width}x{height} frame is too flat for the tag strip")
    xs, ys, cell_of = _stamp_layout(width, height)
    pixels = _LEVELS[_bits(tag)][:, cell_of]  # (ROWS, strip width): each pixel's level
    for row in range(ROWS):
        luma[ys[row] : ys[row + 1], xs[0] : xs[-1]] = pixels[row]


def read_tag(luma: np.ndarray) -> FrameTag | None:
    """The tag in a decoded luma plane, or ``None`` when the strip is absent or damaged."""
    height, width = luma.shape
    if width < COLUMNS or strip_height(width) > height // 2:
        return None
    rows, starts, ends, counts = _inner(width, height)
    # each strip row's column sums across the frame, running totals, then each cell's
    # inner columns (np.add.reduce: ndarray.mean's Python wrapper costs more than the sum)
    profiles = np.zeros((ROWS, width + 1), np.float64)
    for row, (top, bottom) in enumerate(rows):
        np.add.reduce(luma[top:bottom], axis=0, dtype=np.float64, out=profiles[row, 1:])
    np.cumsum(profiles, axis=1, out=profiles)
    flat = ((profiles[:, ends] - profiles[:, starts]) / counts).ravel()
    erased = np.flatnonzero(np.abs(flat - _MID) < MARGIN)
    if len(erased) > MAX_ERASURES:
        return None
    word = int.from_bytes(np.packbits(flat > _MID).tobytes(), "big")
    fixed = _correct(word, [int(i) for i in erased])
    if fixed is None:
        return None
    payload = (fixed >> 32).to_bytes(6, "big")
    if payload[5] & 0xF != VERSION:
        return None
    return FrameTag(
        frame_id=int.from_bytes(payload[:2], "big"),
        capture_ms=int.from_bytes(payload[2:5], "big"),
        source=payload[5] >> 4,
    )


@functools.lru_cache(maxsize=1)
def _syndrome_tables() -> tuple[list[int], dict[int, tuple[int, ...]]]:
    """What flipping each of the 80 bits does to the syndrome (CRC-32 is linear over GF(2)
    for a fixed length), and syndrome -> the one or two flipped bits that cause it."""
    zero = zlib.crc32(bytes(6))
    single = []
    for bit in range(BITS):  # bit 0 is the most significant of the 80-bit word
        position = BITS - 1 - bit
        if position >= 32:
            single.append(zlib.crc32((1 << (position - 32)).to_bytes(6, "big")) ^ zero)
        else:
            single.append(1 << position)
    errors: dict[int, tuple[int, ...]] = {s: (i,) for i, s in enumerate(single)}
    for i in range(BITS):
        for j in range(i + 1, BITS):
            errors[single[i] ^ single[j]] = (i, j)
    return single, errors


def _syndrome(word: int) -> int:
    return zlib.crc32((word >> 32).to_bytes(6, "big")) ^ (word & 0xFFFFFFFF)


def _correct(word: int, erased: list[int]) -> int | None:
    """The codeword ``word`` was, trying both values of each erased cell and correcting up
    to ``MAX_FLIPS`` clearly wrong cells, with 2 x flips + erasures <= 4: CRC-32 has a
    Hamming distance of 6 at this length (tests/test_qoe.py checks it), so one more
    error is still detected, never "corrected" into another frame's tag. ``None`` if no
    reading checks, or if two different ones do."""
    base = _syndrome(word)
    if base == 0 and not erased:
        return word  # the common case: a clean read needs no tables
    single, errors = _syndrome_tables()
    found: int | None = None
    for mask in range(1 << len(erased)):
        flips = [erased[k] for k in range(len(erased)) if mask >> k & 1]
        syndrome = base
        for bit in flips:
            syndrome ^= single[bit]
        if syndrome:
            extra = errors.get(syndrome, ())
            budget = min(MAX_FLIPS, (4 - len(erased)) // 2)
            if not extra or len(extra) > budget or set(extra) & set(erased):
                continue
            flips += extra
        candidate = word
        for bit in flips:
            candidate ^= 1 << (BITS - 1 - bit)
        if found is not None and found != candidate:
            return None  # two readings check: ambiguous, so none is trusted
        found = candidate
    return found


def unwrap_capture_ms(capture_ms: int, now_ms: int) -> int:
    """The full capture time (ms since the epoch) of a wrapped ``capture_ms``, read at
    ``now_ms`` on a clock shared with the sender: the latest time at or before ``now_ms``
    (or up to a minute after it, for a clock slightly behind) with those low bits."""
    behind = (now_ms - capture_ms) % TIME_MODULUS
    if behind > TIME_MODULUS - _SKEW_MS:
        behind -= TIME_MODULUS
    return now_ms - behind
