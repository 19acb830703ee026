"""Memory of a long run: 2 hours of 20 streams at 1 Hz through the collector's storage path.

    .venv/bin/python bench/stats_spill.py [--hours 2] [--streams 20] [--window 600]

No peers: synthetic rows (every sample column filled, as a media row is) go straight into
``StatsCollector._append_rows`` -- the path ``poll()`` and ``add_rows()`` store through --
with ``elapsed_s`` advancing one second per poll, plus an event a minute per stream. The
collector keeps ``--window`` seconds in memory and spills older rows to a CSV, as a ``Lab``
does. Prints the peak RSS growth while storing (the kernel's cost of a long run), then while
reading the whole run back (``samples``) and exporting it (``to_csv``, streamed), and checks
that nothing was lost. Target (issue 17): < ~200 MB growth for 2 h x 20 streams.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rtclab.stats import SAMPLE_COLUMNS, StatsCollector, read_samples_csv


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Reset VmHWM (Linux >= 4.0) so each phase's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def _row(t: datetime, elapsed: float, stream: int) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SAMPLE_COLUMNS, 1234.5678)
    row.update(
        t=t,
        elapsed_s=elapsed,
        peer=f"peer{stream // 2}",
        remote=f"remote{stream // 2}",
        kind="video" if stream % 2 else "audio",
        direction="outbound",
        local_candidate_type="host",
        remote_candidate_type="srflx",
        protocol="udp",
        relay_protocol=None,
        local_address="127.0.0.1:50000",
        remote_address="192.0.2.1:40000",
        connection_state="connected",
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--window", type=float, default=600.0)
    args = parser.parse_args()
    seconds = int(args.hours * 3600)
    with tempfile.TemporaryDirectory(prefix="rtclab-bench-") as tmp:
        collector = StatsCollector(
            interval=1.0, window=args.window, spill_path=Path(tmp) / "spill" / "samples.csv"
        )
        t0 = datetime.now(timezone.utc)
        gc.collect()
        base = _status_kb("VmRSS")
        _reset_peak()
        began = time.perf_counter()
        for second in range(seconds):
            t = t0 + timedelta(seconds=second)
            collector._append_rows(
                [_row(t, float(second), s) for s in range(args.streams)], float(second)
            )
            if second % 60 == 0:
                for s in range(args.streams):
                    collector.record_event(f"peer{s // 2}", f"remote{s // 2}", "note", second)
        store_s = time.perf_counter() - began
        store_peak = _status_kb("VmHWM") - base
        in_memory = len(collector.store.rows)
        spill = collector.spill_path
        spill_mb = spill.stat().st_size / 1e6 if spill is not None and spill.exists() else 0.0

        _reset_peak()
        began = time.perf_counter()
        paths = collector.to_csv(Path(tmp) / "out")
        csv_s = time.perf_counter() - began
        csv_peak = _status_kb("VmHWM") - base

        _reset_peak()
        began = time.perf_counter()
        whole = collector.samples
        read_s = time.perf_counter() - began
        read_peak = _status_kb("VmHWM") - base
        rows = len(whole)
        del whole
        gc.collect()
        exported = len(read_samples_csv(paths["samples"]))

    total = seconds * args.streams
    print(f"{args.hours:g} h x {args.streams} streams at 1 Hz = {total} rows, "
          f"window {args.window:g} s")  # fmt: skip
    print(f"storing:  {store_s:5.1f} s, peak RSS growth {store_peak / 1024:6.1f} MB "
          f"({in_memory} rows in memory, {spill_mb:.0f} MB spilled to CSV)")  # fmt: skip
    print(f"to_csv:   {csv_s:5.1f} s, peak RSS growth {csv_peak / 1024:6.1f} MB (streamed)")
    print(f"samples:  {read_s:5.1f} s, peak RSS growth {read_peak / 1024:6.1f} MB "
          "(whole run as a frame)")  # fmt: skip
    print(f"rows back: samples {rows}, samples.csv {exported} (expected {total})")
    assert rows == exported == total, "rows were lost"


if __name__ == "__main__":
    main()
