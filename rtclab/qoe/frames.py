"""What a receiver learns from each decoded video frame: one ``frames`` row per frame.

:class:`FrameTracker` is the sans-I/O core a peer feeds with every decoded luma plane and
its decode time (wall clock, the clock the sender stamped): it reads the tag, unwraps id
and capture time, emits a row per frame and one per frame id that never arrived, scores a
subsample against the regenerated reference (PSNR and SSIM on luma) and counts freezes by
the W3C webrtc-stats rule. Untagged frames (a file, a camera, a muted track) give no row:
they are counted (``frames_untagged``), never guessed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .pattern import TestPattern
from .tag import ID_MODULUS, SOURCE_CAMERA, SOURCE_SCREEN, read_tag, unwrap_capture_ms

__all__ = ["FRAME_COLUMNS", "FrameTracker", "FreezeDetector", "psnr_db", "ssim"]

FRAME_COLUMNS: list[str] = [
    "t",
    "peer",
    "remote",
    "frame_id",
    "capture_t",
    "decode_t",
    "latency_ms",
    "width",
    "height",
    "psnr_db",
    "ssim",
]
FRAME_TIME_COLUMNS = ("t", "capture_t", "decode_t")
FRAME_STRING_COLUMNS = ("peer", "remote")

_FREEZE_WINDOW = 30  # frames whose mean inter-frame delay the freeze rule compares with
_MAX_GAP = 1 << 14  # a forward jump larger than this (or any step back) is a new source


def psnr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR (dB) of two luma planes; identical planes give 100 (a finite ceiling)."""
    mse = float(np.mean((reference.astype(np.float32) - decoded.astype(np.float32)) ** 2))
    return 100.0 if mse < 1e-10 else min(100.0, 10.0 * math.log10(255.0**2 / mse))


def _block_means(x: np.ndarray) -> np.ndarray:
    """Means of the 8x8 blocks of ``x`` (height and width multiples of 8), by contiguous
    reductions: a 4-D reshape and transpose costs several times more."""
    h, w = x.shape
    rows: np.ndarray = x.reshape(h // 8, 8, w).sum(axis=1)
    out: np.ndarray = rows.reshape(h // 8, w // 8, 8).sum(axis=2) / 64.0
    return out


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean SSIM of two luma planes over non-overlapping 8x8 windows (as libyuv computes
    it for libwebrtc's tests; no Gaussian weighting, so cheap enough per frame)."""
    h, w = (reference.shape[0] // 8) * 8, (reference.shape[1] // 8) * 8
    a = reference[:h, :w].astype(np.float32)
    b = decoded[:h, :w].astype(np.float32)
    mu_a, mu_b = _block_means(a), _block_means(b)
    var_a = _block_means(a * a) - mu_a**2
    var_b = _block_means(b * b) - mu_b**2
    cov = _block_means(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(value.mean())


class FreezeDetector:
    """W3C webrtc-stats freezes: an inter-frame delay longer than
    ``max(3 x mean, mean + 150 ms)`` of the mean delay over the last 30 frames."""

    def __init__(self) -> None:
        self._last: float | None = None
        self._delays: deque[float] = deque(maxlen=_FREEZE_WINDOW)
        self.freeze_count = 0
        self.total_freezes_duration_ms = 0.0

    def on_frame(self, t: float) -> float | None:
        """Note a frame shown at ``t`` (s); the freeze's duration (ms) if it ended one."""
        last, self._last = self._last, t
        if last is None:
            return None
        delay = max(0.0, t - last)
        frozen: float | None = None
        if len(self._delays) >= 2:
            mean = sum(self._delays) / len(self._delays)
            if delay > max(3 * mean, mean + 0.150):
                frozen = delay * 1000.0
                self.freeze_count += 1
                self.total_freezes_duration_ms += frozen
        self._delays.append(delay)
        return frozen


@dataclass
class ScoreJob:
    """A frame picked for PSNR/SSIM: its row (filled in when scored) and what redraws it."""

    row: dict[str, Any]
    source: int
    frame_id: int
    capture_ms: int


@dataclass
class FrameTracker:
    """Per received video stream: frames in, ``frames`` rows out (see the module doc).

    ``quality_interval`` (s) spaces the frames scored for PSNR/SSIM: scoring costs about a
    millisecond per 320x240 frame (2.5 at 640x480), too much for every frame of a 12-pair
    lab. With ``defer_scores`` the frame to score is left in :attr:`pending` for the
    caller to :meth:`score` elsewhere (a peer does it off its event loop).
    """

    peer: str
    remote: str
    quality_interval: float = 0.5
    defer_scores: bool = False
    pending: ScoreJob | None = None
    freezes: FreezeDetector = field(default_factory=FreezeDetector)
    frames_untagged: int = 0
    frames_tagged: int = 0
    #: the freeze (ms) the latest frame ended, else None
    freeze_ms: float | None = None
    _last_id: int | None = None
    _untagged_since: int = 0
    _last_scored: float = -math.inf
    _patterns: dict[tuple[int, int, int], TestPattern] = field(default_factory=dict)

    def on_frame(self, luma: np.ndarray, now: float) -> list[dict[str, Any]]:
        """Rows for one decoded frame (its luma plane) shown at wall-clock ``now`` (s):
        missing ids before it first, then its own; none if it carries no tag."""
        self.freeze_ms = self.freezes.on_frame(now)
        tag = read_tag(luma)
        if tag is None:
            self.frames_untagged += 1
            self._untagged_since += 1
            return []
        self.frames_tagged += 1
        rows = self._missing_before(tag.frame_id, now)
        height, width = luma.shape
        now_ms = int(now * 1000)
        capture_ms = unwrap_capture_ms(tag.capture_ms, now_ms)
        row: dict[str, Any] = {
            "t": _utc(now),
            "peer": self.peer,
            "remote": self.remote,
            "frame_id": float(self._last_id if self._last_id is not None else tag.frame_id),
            "capture_t": _utc(capture_ms / 1000),
            "decode_t": _utc(now),
            "latency_ms": now * 1000.0 - capture_ms,
            "width": float(width),
            "height": float(height),
            "psnr_db": None,
            "ssim": None,
        }
        if tag.source in (SOURCE_CAMERA, SOURCE_SCREEN) and now - self._last_scored >= (
            self.quality_interval
        ):
            self._last_scored = now
            job = ScoreJob(row, tag.source, int(row["frame_id"]), capture_ms)
            if self.defer_scores:
                self.pending = job
            else:
                row.update(self.score(luma, job))
        rows.append(row)
        return rows

    def _missing_before(self, wrapped_id: int, now: float) -> list[dict[str, Any]]:
        """Unwrap ``wrapped_id`` (16 bits) against the last id; rows for the ids skipped.

        Ids skipped while untagged frames arrived were received (a misread strip, a muted
        track's black frames): only the rest of the gap, its first ids, count as missing.
        """
        untagged, self._untagged_since = self._untagged_since, 0
        last = self._last_id
        if last is None:
            self._last_id = wrapped_id
            return []
        step = (wrapped_id - last) % ID_MODULUS
        if step == 0 or step > _MAX_GAP:  # a repeat, or a new source (restarted ids)
            self._last_id = wrapped_id if step > _MAX_GAP else last
            return []
        self._last_id = last + step
        missing = max(0, step - 1 - untagged)
        if not missing:
            return []
        # one template, copied per missing id (a saturated sender skips about every other
        # frame, so this runs for most received frames)
        template = dict.fromkeys(FRAME_COLUMNS)
        template.update(t=_utc(now), peer=self.peer, remote=self.remote)
        rows = []
        for k in range(1, missing + 1):
            row = template.copy()
            row["frame_id"] = float(last + k)
            rows.append(row)
        return rows

    def score(self, luma: np.ndarray, job: ScoreJob) -> dict[str, float | None]:
        """PSNR and SSIM of ``luma`` against the reference of ``job``'s frame (thread-safe:
        a peer runs it in an executor, off the event loop)."""
        height, width = luma.shape
        reference = self._reference(job.source, width, height, job.frame_id, job.capture_ms)
        if reference is None:
            return {"psnr_db": None, "ssim": None}
        return {"psnr_db": psnr_db(reference, luma), "ssim": ssim(reference, luma)}

    def _reference(
        self, source: int, width: int, height: int, frame_id: int, capture_ms: int
    ) -> np.ndarray | None:
        key = (source, width, height)
        pattern = self._patterns.get(key)
        if pattern is None:
            try:
                style: Any = "camera" if source == SOURCE_CAMERA else "screen"
                pattern = self._patterns[key] = TestPattern(width, height, style)
            except ValueError:
                return None
        return pattern.luma(frame_id, capture_ms)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
