"""Stats: aiortc/aioice numbers -> rows (pure ``convert``) -> pandas frames (``collector``)."""

from __future__ import annotations

from rtclab.stats.collector import SampleListener, StatsCollector, StatsSource
from rtclab.stats.convert import (
    EVENT_COLUMNS,
    SAMPLE_COLUMNS,
    ConnectionSnapshot,
    snapshot_to_rows,
)
from rtclab.stats.files import (
    read_events_csv,
    read_events_parquet,
    read_frames_csv,
    read_frames_parquet,
    read_samples_csv,
    read_samples_parquet,
)

__all__ = [
    "EVENT_COLUMNS",
    "SAMPLE_COLUMNS",
    "ConnectionSnapshot",
    "SampleListener",
    "StatsCollector",
    "StatsSource",
    "read_events_csv",
    "read_events_parquet",
    "read_frames_csv",
    "read_frames_parquet",
    "read_samples_csv",
    "read_samples_parquet",
    "snapshot_to_rows",
]
