"""Where a collector keeps rows: a bounded window in memory, everything older spilled.

The window (seconds of ``elapsed_s``) and ``max_rows`` bound memory and what live views
see; with a ``spill_path`` evicted rows are appended to that CSV (events to
``<stem>.events.csv`` and per-frame rows, :data:`rtclab.qoe.FRAME_COLUMNS`, to
``<stem>.frames.csv`` beside it; ``frames_max_rows`` bounds those in memory) and
:attr:`SampleStore.samples`, :attr:`SampleStore.events`, :attr:`SampleStore.frames`,
:meth:`~SampleStore.to_csv` and :meth:`~SampleStore.to_parquet` read them back, so the
window never bounds what a run returns. Without ``spill_path`` evicted rows are gone
(``Lab`` always gives its collector one).
"""

from __future__ import annotations

import itertools
import shutil
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..qoe.frames import FRAME_COLUMNS
from .convert import EVENT_COLUMNS, SAMPLE_COLUMNS
from .files import (
    append_csv_rows,
    event_cell,
    events_frame,
    frames_frame,
    read_events_csv,
    read_frames_csv,
    read_samples_csv,
    require_pyarrow,
    samples_frame,
)

__all__ = ["RunFrames", "SampleStore"]


class RunFrames:
    """``samples``, ``events`` and ``frames`` of the run, read through to
    :attr:`frames_source` (a :class:`SampleStore`, or another ``RunFrames``): defined once
    for every object that shows them (:class:`~rtclab.StatsCollector`, :class:`~rtclab.Lab`)."""

    @property
    def frames_source(self) -> SampleStore | RunFrames:
        raise NotImplementedError

    @property
    def samples(self) -> pd.DataFrame:
        """Every sample row of the run, spilled ones included (``t`` UTC, numbers float64)."""
        return self.frames_source.samples

    @property
    def events(self) -> pd.DataFrame:
        """Every event of the run, spilled ones included."""
        return self.frames_source.events

    @property
    def frames(self) -> pd.DataFrame:
        """One row per received video frame, and per frame id that never arrived
        (``decode_t`` empty): latency, size, PSNR/SSIM (:mod:`rtclab.qoe`, docs/qoe.md)."""
        return self.frames_source.frames


class SampleStore:
    """Sample rows and events as plain dicts; a DataFrame is built only when asked for."""

    def __init__(
        self,
        *,
        window: float | None = 600.0,
        max_rows: int | None = 200_000,
        spill_path: str | Path | None = None,
        frames_max_rows: int = 20_000,
    ) -> None:
        if window is not None and window <= 0:
            raise ValueError("window must be > 0 or None")
        if max_rows is not None and max_rows < 1:
            raise ValueError("max_rows must be >= 1 or None")
        self.window = window
        self.max_rows = max_rows
        self.spill_path = Path(spill_path) if spill_path is not None else None
        self.rows: deque[dict[str, Any]] = deque()  # in memory, oldest first
        self.event_rows: deque[dict[str, Any]] = deque()
        self.frames_max_rows = frames_max_rows
        self.frame_rows: deque[dict[str, Any]] = deque()

    def recent_rows(self, count: int = 500) -> list[dict[str, Any]]:
        """The newest ``count`` sample rows, newest first, as dicts (no DataFrame built):
        cheap enough to call from a loop that waits for a condition."""
        return list(itertools.islice(reversed(self.rows), count))

    def rows_within(self, window_s: float) -> list[dict[str, Any]]:
        """The sample rows of the last ``window_s`` seconds (by ``elapsed_s``), oldest first:
        what a live view backfills when it opens, without building a DataFrame."""
        if not self.rows:
            return []
        latest = self.rows[-1].get("elapsed_s")
        if not isinstance(latest, (int, float)):
            return []
        recent: list[dict[str, Any]] = []
        for row in reversed(self.rows):
            elapsed = row.get("elapsed_s")
            if isinstance(elapsed, (int, float)) and elapsed < latest - window_s:
                break
            recent.append(row)
        recent.reverse()
        return recent

    def append_event(self, event: dict[str, Any]) -> None:
        """Keep an event row; beyond ``max_rows`` the oldest spill (or go)."""
        self.event_rows.append(event)
        if self.max_rows is not None and len(self.event_rows) > self.max_rows:
            excess = len(self.event_rows) - self.max_rows
            evicted = [self.event_rows.popleft() for _ in range(excess)]
            if self.spill_path is not None:
                append_csv_rows(self.events_spill_path(), EVENT_COLUMNS, evicted)

    def append_frames(self, rows: list[dict[str, Any]]) -> None:
        """Keep ``frames`` rows; beyond ``frames_max_rows`` the oldest spill (or go)."""
        self.frame_rows.extend(rows)
        excess = len(self.frame_rows) - self.frames_max_rows
        if excess > 0:
            evicted = [self.frame_rows.popleft() for _ in range(excess)]
            if self.spill_path is not None:
                append_csv_rows(self._sibling("frames"), FRAME_COLUMNS, evicted)

    def append_rows(self, rows: list[dict[str, Any]], elapsed: float) -> None:
        self.rows.extend(rows)
        evicted: list[dict[str, Any]] = []
        if self.window is not None:
            cutoff = elapsed - self.window
            while self.rows and self.rows[0]["elapsed_s"] < cutoff:
                evicted.append(self.rows.popleft())
        if self.max_rows is not None:
            while len(self.rows) > self.max_rows:
                evicted.append(self.rows.popleft())
        if evicted and self.spill_path is not None:
            append_csv_rows(self.spill_path, SAMPLE_COLUMNS, evicted)

    def events_spill_path(self) -> Path:
        return self._sibling("events")

    def _sibling(self, what: str) -> Path:
        assert self.spill_path is not None
        return self.spill_path.with_name(f"{self.spill_path.stem}.{what}.csv")

    # -- frames and export -------------------------------------------------------------

    def _spilled(self, path: Path | None) -> Path | None:
        if path is None or not path.exists() or path.stat().st_size == 0:
            return None
        return path

    def _whole(
        self, memory: pd.DataFrame, spill: Path | None, read: Callable[[Path], pd.DataFrame]
    ) -> pd.DataFrame:
        """The spilled rows (read back with ``read``) followed by the ones in memory."""
        spilled = self._spilled(spill) if self.spill_path else None
        if spilled is None:
            return memory
        frame: pd.DataFrame = pd.concat([read(spilled), memory], ignore_index=True)
        return frame

    @property
    def samples(self) -> pd.DataFrame:
        """Every row of the run (spilled ones read back first), ``SAMPLE_COLUMNS`` order;
        ``t`` UTC, numbers float64."""
        return self._whole(samples_frame(self.rows), self.spill_path, read_samples_csv)

    @property
    def events(self) -> pd.DataFrame:
        """Every event of the run, ``EVENT_COLUMNS`` order; ``value`` as recorded (spilled
        ones as :func:`read_events_csv` decodes them)."""
        spill = self.events_spill_path() if self.spill_path else None
        return self._whole(events_frame(self.event_rows), spill, read_events_csv)

    @property
    def frames(self) -> pd.DataFrame:
        """Every ``frames`` row of the run (spilled ones first), ``FRAME_COLUMNS`` order."""
        spill = self._sibling("frames") if self.spill_path else None
        return self._whole(frames_frame(self.frame_rows), spill, read_frames_csv)

    def clear(self) -> None:
        """Forget all rows and events, spilled ones too (not the previous snapshots: rates
        continue)."""
        self.rows.clear()
        self.event_rows.clear()
        self.frame_rows.clear()
        if self.spill_path is not None:
            for path in (self.spill_path, self.events_spill_path(), self._sibling("frames")):
                path.unlink(missing_ok=True)

    def to_csv(self, directory: str | Path) -> dict[str, Path]:
        """Write ``samples.csv``, ``events.csv`` and ``frames.csv`` (the whole run) into
        ``directory``.

        Streamed: the spill file is copied and the rows in memory appended, so no frame of
        the whole run is built. Plain ``pd.read_csv`` works on both (see the README:
        ``parse_dates=["t"]``); :func:`read_samples_csv` / :func:`read_events_csv` give back
        exactly the dtypes of :attr:`samples` / :attr:`events`.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / f"{name}.csv" for name in ("samples", "events", "frames")}
        spilled_to = self.spill_path is not None
        spills = (
            self.spill_path,
            self.events_spill_path() if spilled_to else None,
            self._sibling("frames") if spilled_to else None,
        )
        parts = zip(
            paths.values(),
            spills,
            (SAMPLE_COLUMNS, EVENT_COLUMNS, FRAME_COLUMNS),
            (self.rows, self.event_rows, self.frame_rows),
            strict=True,
        )
        for path, spill, columns, rows in parts:
            spilled = self._spilled(spill)
            if spilled is not None:
                shutil.copyfile(spilled, path)
            else:
                path.write_text("")
            append_csv_rows(path, columns, list(rows))
        return paths

    def to_parquet(self, directory: str | Path) -> dict[str, Path]:
        """Write ``samples.parquet``, ``events.parquet`` and ``frames.parquet`` (the whole
        run); needs pyarrow."""
        require_pyarrow()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / f"{name}.parquet" for name in ("samples", "events", "frames")}
        self.samples.to_parquet(paths["samples"], index=False, engine="pyarrow")
        self.frames.to_parquet(paths["frames"], index=False, engine="pyarrow")
        events = self.events
        events["value"] = [event_cell(v) or None for v in events["value"]]
        events.to_parquet(paths["events"], index=False, engine="pyarrow")
        return paths
