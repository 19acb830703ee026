"""Frame tag cost: stamping and reading the tag of one frame, and scoring one frame.

    .venv/bin/python bench/qoe_tag.py [--runs 2000]

Budget (issue #13): stamp + read <= 0.3 ms per 640x480 frame. Scoring (redraw the reference,
PSNR, SSIM) runs on at most one frame every 0.5 s per stream; printed for reference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from rtclab.qoe import FrameTag, TestPattern, psnr_db, read_tag, ssim, stamp_tag


def per_call_ms(fn: Callable[[], object], runs: int) -> float:
    """Median over 5 batches of the mean time per call (ms)."""
    batches = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(runs):
            fn()
        batches.append((time.perf_counter() - t0) / runs * 1000)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    for width, height in ((160, 120), (320, 240), (640, 480), (1280, 720)):
        pattern = TestPattern(width, height)
        luma = pattern.luma(1234, 1_780_000_000_000)
        other = pattern.luma(1235, 1_780_000_000_066)
        tag = FrameTag(1234, 5678, 1)
        stamp = per_call_ms(lambda: stamp_tag(luma, tag), args.runs)  # noqa: B023
        read = per_call_ms(lambda: read_tag(luma), args.runs)  # noqa: B023
        noisy = np.clip(luma + np.random.default_rng(0).normal(0, 25, luma.shape), 0, 255)
        noisy_u8 = noisy.astype(np.uint8)
        read_noisy = per_call_ms(lambda: read_tag(noisy_u8), args.runs // 4)  # noqa: B023
        runs = max(20, args.runs // 50)
        draw = per_call_ms(lambda: pattern.luma(1234, 0), runs)  # noqa: B023
        score = per_call_ms(lambda: (psnr_db(luma, other), ssim(luma, other)), runs)  # noqa: B023
        print(
            f"{width}x{height}: stamp {stamp:.3f} ms + read {read:.3f} ms = "
            f"{stamp + read:.3f} ms (read, noisy strip: {read_noisy:.3f} ms); "
            f"scoring one frame: reference {draw:.2f} ms + PSNR/SSIM {score:.2f} ms"
        )


if __name__ == "__main__":
    main()
