"""Where a peer's PSNR/SSIM run: one rtclab thread for every peer, within a CPU budget.

Scoring a 320x240 frame against its reference costs ~1.5 ms of CPU; two a second per
received stream is 10 % of a core at 32 streams, taken from the encoders and the event loop
of a lab that is already saturated. So scores are a sample with a budget
(:class:`CpuBudget`): past its share of a core, and past a few queued jobs, frames go
unscored (their rows keep ``psnr_db``/``ssim`` empty) and media does not slow down.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..qoe.frames import FrameTracker, ScoreJob

__all__ = ["SCORING_SHARE", "CpuBudget", "Scoring", "scoring"]

MAX_QUEUED = 4  # PSNR/SSIM jobs queued at once (all peers of the process); more: skipped
#: the share of one core the process's scoring may use, over a few seconds
SCORING_SHARE = 0.05


class CpuBudget:
    """A share of one core for optional work: a bucket of CPU seconds refilled at
    ``share`` per second (up to ``burst``); work may start while it is not empty, and
    what it then spends is taken out (one job may overdraw the bucket, never two)."""

    def __init__(self, share: float, burst: float = 0.2, now: float = 0.0) -> None:
        self.share = share
        self.burst = burst
        self._level = burst
        self._at = now

    def _refill(self, now: float) -> None:
        self._level = min(self.burst, self._level + max(0.0, now - self._at) * self.share)
        self._at = max(self._at, now)

    def allows(self, now: float) -> bool:
        self._refill(now)
        return self._level > 0

    def spend(self, seconds: float, now: float) -> None:
        self._refill(now)
        self._level -= seconds


class Scoring:
    """The thread (created on first use), the queue bound and the budget; counted in the
    thread, so a job whose loop closed first still frees its place."""

    def __init__(self, share: float = SCORING_SHARE) -> None:
        self._in_flight = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._budget = CpuBudget(share, now=time.monotonic())

    def start(self) -> ThreadPoolExecutor | None:
        """The executor to submit one job to, or ``None`` when enough are queued or the
        budget is spent."""
        with self._lock:
            if self._in_flight >= MAX_QUEUED or not self._budget.allows(time.monotonic()):
                return None
            self._in_flight += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="rtclab-qoe")
            return self._executor

    def run(self, tracker: FrameTracker, luma: Any, job: ScoreJob) -> dict[str, float | None]:
        started = time.thread_time()  # CPU, not wall: a busy machine must not shrink it
        try:
            return tracker.score(luma, job)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._budget.spend(time.thread_time() - started, time.monotonic())


scoring = Scoring()
