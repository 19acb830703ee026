"""Per-interval QoE columns of an inbound video stream, from its ``frames`` rows: pure.

The stats collector calls :func:`interval_qoe` once per poll with the rows that arrived
since the previous poll; freezes come from the receiver's counters instead (every decoded
frame counts for a freeze, tagged or not), as interval deltas in the converter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["FRAME_QOE_COLUMNS", "interval_qoe"]

#: the columns :func:`interval_qoe` fills on an inbound video row
FRAME_QOE_COLUMNS: list[str] = [
    "latency_ms_p50",
    "latency_ms_p95",
    "frames_dropped",
    "psnr_db",
    "ssim",
]


def interval_qoe(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """Latency percentiles, frames that never arrived, mean PSNR and SSIM of ``rows``
    (one stream's ``frames`` rows of one interval); ``None`` where nothing was measured."""
    latencies: list[float] = []
    psnr: list[float] = []
    ssim: list[float] = []
    dropped = 0
    for row in rows:
        latency = row.get("latency_ms")
        if row.get("decode_t") is None:
            dropped += 1
            continue
        if isinstance(latency, (int, float)):
            latencies.append(float(latency))
        for name, values in (("psnr_db", psnr), ("ssim", ssim)):
            value = row.get(name)
            if isinstance(value, (int, float)):
                values.append(float(value))
    p50 = p95 = None
    if latencies:
        p50, p95 = (float(v) for v in np.percentile(latencies, [50, 95]))
    return {
        "latency_ms_p50": p50,
        "latency_ms_p95": p95,
        "frames_dropped": float(dropped) if latencies or dropped else None,
        "psnr_db": sum(psnr) / len(psnr) if psnr else None,
        "ssim": sum(ssim) / len(ssim) if ssim else None,
    }
