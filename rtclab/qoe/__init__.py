"""What the viewer sees: tagged synthetic frames, per-frame latency, loss, freezes and quality.

Pure (numpy only): the peer stamps and reads tags through it, the stats layer aggregates
with it. See docs/qoe.md.
"""

from .aggregate import FRAME_QOE_COLUMNS, interval_qoe
from .frames import FRAME_COLUMNS, FrameTracker, FreezeDetector, psnr_db, ssim
from .pattern import TestPattern
from .tag import FrameTag, read_tag, stamp_tag, unwrap_capture_ms

__all__ = [
    "FRAME_COLUMNS",
    "FRAME_QOE_COLUMNS",
    "FrameTag",
    "FrameTracker",
    "FreezeDetector",
    "TestPattern",
    "interval_qoe",
    "psnr_db",
    "read_tag",
    "ssim",
    "stamp_tag",
    "unwrap_capture_ms",
]
