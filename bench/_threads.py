"""CPU time per kind of thread in this process, for the benches' per-frame split.

Python names its threads (``video-decoder``, ``asyncio_0`` for the default executor that
aiortc encodes in, ``rtclab-qoe_0``), the kernel counts each one's CPU time in
``/proc/self/task/<tid>/stat``: joining the two shows where the process's CPU goes.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

_TICK = os.sysconf("SC_CLK_TCK")


def _group(name: str) -> str:
    if name == "MainThread":
        return "event loop"
    if name.endswith("-decoder"):
        return "decoders"
    if name.startswith("asyncio_"):
        return "encoders (default executor)"
    if name.startswith("rtclab-qoe"):
        return "PSNR/SSIM scoring"
    return "other"


def thread_cpu() -> Counter[str]:
    """Seconds of CPU (user + system) so far, summed per thread group (live threads)."""
    seconds: Counter[str] = Counter()
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        seconds[_group(thread.name)] += (int(fields[11]) + int(fields[12])) / _TICK
    return seconds


def cpu_report(cpu_s: float, before: Counter[str], after: Counter[str], frames: int) -> str:
    """The process's CPU per received frame, then the same split by thread group (ms,
    largest first): the lines both benches print."""
    frames = max(1, frames)
    per = {k: (after[k] - before.get(k, 0.0)) * 1000 / frames for k in after}
    split = ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
    return f"CPU {cpu_s * 1000 / frames:.2f} ms per received frame\nper thread group: {split}"
