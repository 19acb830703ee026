"""Dashboard: a live plotly FigureWidget of a StatsCollector's rows, updated in place, rate-bounded.

Rows arrive through :meth:`StatsCollector.on_sample` and are folded into bounded per-trace
deques at once (cheap); the figure is refreshed at most ``max_rate_hz`` times a second by a
loop timer, so a fast collector or many peers never flood the browser. With no new samples
nothing runs: a dashboard owns no task, only (at most) one pending timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from ..stats.figures import (
    PANELS,
    Pair,
    pair_colour,
    pair_paths,
    panel_cell,
    panel_grid,
    panel_points,
    trace_name,
    write_html,
)
from ._live import LiveFigure

if TYPE_CHECKING:
    from ..stats.collector import StatsCollector

__all__ = ["STATE_COLOURS", "Dashboard"]


#: Connection states drawn on the timeline, in legend order, with their colours.
STATE_COLOURS: dict[str, str] = {
    "new": "#c7c7c7",
    "connecting": "#ffbb78",
    "connected": "#2ca02c",
    "disconnected": "#dbdb8d",
    "failed": "#d62728",
    "closed": "#525252",
}
_TIMELINE_EVENTS = {"connection-state", "failed"}


class Dashboard(LiveFigure):
    """RTT, loss, jitter, bitrate and fps per ``peer → remote``, plus a connection-state timeline.

    One colour per pair, shared by every panel, and one legend entry per pair (a legend group:
    clicking it hides that pair everywhere), so twenty pairs stay readable where twenty
    subplots would not. Trace names carry the ICE path (``alice → bob host/host``).

    Refreshes are single ``plotly_update`` messages (what ``batch_update`` sends, without its
    per-property validation, which costs ~4x more with many traces) over the last
    ``window_s`` seconds, with at most ``max_points`` points per trace (evenly thinned).
    On a busy loop they come less often than ``max_rate_hz`` (:func:`._live.refresh_delay`): a
    refresh of a hundred traces takes tens of milliseconds that a saturated lab's media
    would otherwise wait for.
    """

    def __init__(
        self,
        collector: StatsCollector,
        *,
        window_s: float = 120.0,
        max_rate_hz: float = 2.0,
        max_points: int = 600,
        title: str = "rtclab live stats",
        panel_height: int = 150,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        if not 0 < max_rate_hz <= 10:
            raise ValueError("max_rate_hz must be in (0, 10]")
        if max_points < 2:
            raise ValueError("max_points must be >= 2")
        self.collector = collector
        self.window_s = float(window_s)
        self.max_rate_hz = float(max_rate_hz)
        self.max_points = max_points
        #: How many times the figure was refreshed (one message to the browser each).
        self.refreshes = 0
        self.figure = go.FigureWidget(_base_figure(title, panel_height))
        self._state_trace = {state: i for i, state in enumerate(STATE_COLOURS)}
        self._pairs: list[Pair] = []
        self._trace_index: dict[Pair, list[int]] = {}
        self._points: dict[Pair, list[deque[tuple[float, float]]]] = {}
        # what each trace showed when last sent: unchanged traces are not sent again
        self._sent: dict[int, tuple[Any, ...]] = {}
        self._paths: dict[Pair, str] = {}
        self._named: dict[Pair, str] = {}
        self._states: dict[Pair, deque[tuple[float, str]]] = {}
        self._pending_events: list[tuple[datetime, Pair, str]] = []
        self._last_event: object | None = None
        self._offset: float | None = None  # unix time - elapsed_s, to place events on x
        self._latest: float | None = None
        self._dirty = False
        self._last_refresh = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._closed = False
        self._ingest(collector.rows_within(self.window_s))
        self._read_events()
        self.refresh()
        self._unsubscribe = collector.on_sample(self._on_sample)

    # -- feeding ---------------------------------------------------------------------------

    def _on_sample(self, rows: list[dict[str, Any]]) -> None:
        """Collector callback (in the loop): fold rows in now, refresh later at most at max rate."""
        if self._closed:
            return
        self._ingest(rows)
        self._schedule_refresh()

    def _ingest(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        for pair, panels in panel_points(rows).items():
            deques = self._pair_deques(pair)
            for series, points in zip(panels, deques, strict=True):
                for x in sorted(series):
                    value = series[x]
                    points.append((x, math.nan if value is None else value))
        self._paths.update(pair_paths(rows))
        for row in rows:
            elapsed = row.get("elapsed_s")
            if isinstance(elapsed, (int, float)) and not math.isnan(elapsed):
                if self._latest is None or elapsed > self._latest:
                    self._latest = float(elapsed)
                t = row.get("t")
                if self._offset is None and isinstance(t, datetime):
                    self._offset = t.timestamp() - float(elapsed)
        self._dirty = True

    def _pair_deques(self, pair: Pair) -> list[deque[tuple[float, float]]]:
        deques = self._points.get(pair)
        if deques is None:
            deques = self._points[pair] = [deque() for _ in PANELS]
        return deques

    def _read_events(self) -> None:
        """Take the collector's events recorded since the last call (newest first, then flip).

        Reads the store's in-memory event rows from the end back to the last event seen,
        so a refresh costs O(new events) however long the run.
        """
        events = self.collector.store.event_rows
        if not events:
            return
        fresh: list[Mapping[str, Any]] = []
        for event in reversed(events):
            if event is self._last_event or len(fresh) >= 10_000:
                break
            fresh.append(event)
        if not fresh:
            return
        self._last_event = fresh[0]
        for event in reversed(fresh):
            if event.get("event") not in _TIMELINE_EVENTS or event.get("remote") is None:
                continue
            state = "failed" if event["event"] == "failed" else str(event.get("value"))
            if state in STATE_COLOURS and isinstance(event.get("t"), datetime):
                pair = (str(event["peer"]), str(event["remote"]))
                self._pending_events.append((event["t"], pair, state))
        self._dirty = True

    def _place_events(self) -> None:
        """Put pending events on the elapsed-time axis once a sample row gave the offset."""
        if self._offset is None:
            return
        for t, pair, state in self._pending_events:
            changes = self._states.setdefault(pair, deque())
            elapsed = t.timestamp() - self._offset
            if changes and changes[-1][1] == state:
                continue
            changes.append((elapsed, state))
        self._pending_events.clear()

    # -- drawing ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Send what changed since the last refresh as one update message (cheap if nothing)."""
        if self._closed:
            return
        started = time.perf_counter()
        self._read_events()
        self._place_events()
        if not self._dirty or self._latest is None:
            return
        self._dirty = False
        cutoff = self._latest - self.window_s
        for pair in sorted(self._points):
            if pair not in self._trace_index:
                self._add_pair(pair)
        xs: list[Any] = []
        ys: list[Any] = []
        x: Any
        y: Any
        names: list[str] = []
        indexes: list[int] = []
        for pair in self._pairs:
            name = trace_name(pair, self._paths.get(pair))
            for index, points in zip(self._trace_index[pair], self._points[pair], strict=True):
                while points and points[0][0] < cutoff:
                    points.popleft()
                # points only come at the end and go at the start: these tell any change
                shown = (
                    name,
                    len(points),
                    points[0] if points else None,
                    points[-1] if points else None,
                )
                if self._sent.get(index) == shown:
                    continue  # e.g. a one-way pair's panels of the other direction, empty
                self._sent[index] = shown
                x, y = self._thin(points)
                xs.append(x)
                ys.append(y)
                names.append(name)
                indexes.append(index)
        for state, index in self._state_trace.items():
            x, y = self._segments(state, cutoff)
            xs.append(x)
            ys.append(y)
            names.append(state)
            indexes.append(index)
        # the rate bound is on messages sent: stamp right before sending, not when building
        self._last_refresh = self._loop.time() if self._loop is not None else -math.inf
        self.figure.plotly_update(
            restyle_data={"x": xs, "y": ys, "name": names}, trace_indexes=indexes
        )
        self.refreshes += 1
        self.last_refresh_s = time.perf_counter() - started

    def _add_pair(self, pair: Pair) -> None:
        """Add the pair's traces (one per panel, one legend entry) in a single message."""
        colour = pair_colour(len(self._pairs))
        name = trace_name(pair, self._paths.get(pair))
        first = len(self.figure.data)
        traces = [
            go.Scatter(
                x=[],
                y=[],
                mode="lines+markers",
                name=name,
                legendgroup=f"{pair[0]}→{pair[1]}",
                showlegend=index == 0,
                line={"color": colour, "width": 1.5},
                marker={"size": 3},
            )
            for index in range(len(PANELS))
        ]
        cells = [panel_cell(index) for index in range(len(PANELS))]
        self.figure.add_traces(
            traces, rows=[row for row, _ in cells], cols=[col for _, col in cells]
        )
        self._trace_index[pair] = list(range(first, first + len(PANELS)))
        self._pairs.append(pair)

    def _thin(self, points: deque[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """At most ``max_points`` evenly spaced points (newest kept) as two float64 arrays.

        Contiguous 1-D float arrays travel to the browser as binary buffers, which is what
        keeps a refresh of many long traces cheap (lists cost ~4x more to serialize). They
        must be contiguous: with column views of a 2-D array JupyterLab drew no line at all.
        NaN is a gap.
        """
        kept = list(points)
        if len(kept) > self.max_points:
            step = math.ceil(len(kept) / self.max_points)
            kept = kept[(len(kept) - 1) % step :: step]
        xs = np.fromiter((p[0] for p in kept), dtype=np.float64, count=len(kept))
        ys = np.fromiter((p[1] for p in kept), dtype=np.float64, count=len(kept))
        return xs, ys

    def _segments(self, state: str, cutoff: float) -> tuple[list[Any], list[Any]]:
        """Timeline bars of one state for every pair, clipped to the window (None-separated)."""
        assert self._latest is not None
        x: list[Any] = []
        y: list[Any] = []
        for pair, changes in self._states.items():
            # drop changes wholly before the window, keeping the one in force at the cutoff
            while len(changes) > 1 and changes[1][0] <= cutoff:
                changes.popleft()
            label = trace_name(pair)
            for i, (start, current) in enumerate(changes):
                end = changes[i + 1][0] if i + 1 < len(changes) else self._latest
                if current != state or end <= cutoff:
                    continue
                x += [max(start, cutoff), max(end, start), None]
                y += [label, label, None]
        return x, y

    # -- display, export, lifetime ---------------------------------------------------------

    def to_html(self, path: str | Path) -> Path:
        """Write the figure as a self-contained HTML file (plotly.js embedded): a report."""
        self.refresh()
        return write_html(go.Figure(self.figure), path)

    def to_png(self, path: str | Path, *, scale: float = 1.0) -> Path:
        """Write the current figure as PNG; needs kaleido (``pip install kaleido``)."""
        if importlib.util.find_spec("kaleido") is None:
            raise RuntimeError("PNG export needs kaleido (not installed): pip install kaleido")
        self.refresh()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        go.Figure(self.figure).write_image(path, format="png", scale=scale)
        return path

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._pairs)} pairs"
        return f"<Dashboard window={self.window_s:g}s {state}>"


def _base_figure(title: str, panel_height: int) -> go.Figure:
    """The empty layout: the grid of metric panels, then the connection-state timeline."""
    base = panel_grid(timeline="Connection state", title=title, height=panel_height)
    rows = panel_cell(len(PANELS) - 1)[0] + 1  # the timeline's row, below the last panel
    base.update_layout(
        legend={"title": {"text": "peer → remote (path)"}, "groupclick": "togglegroup"},
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
        uirevision="rtclab",  # keep the user's zoom and legend toggles across refreshes
    )
    base.update_yaxes(type="category", row=rows, col=1)
    for state, colour in STATE_COLOURS.items():
        base.add_trace(
            go.Scatter(
                x=[],
                y=[],
                mode="lines",
                name=state,
                legendgroup="state",
                legendgrouptitle_text="connection state",
                line={"color": colour, "width": 10},
                hoverinfo="x+y+name",
            ),
            row=rows,
            col=1,
        )
    return base


@functools.cache
def warm_up() -> None:
    """Pay plotly's first-figure costs now, while nothing time-critical runs (once).

    The first ``FigureWidget`` imports plotly's widget module -> nbformat -> jsonschema's
    format checkers (3-4 s; ``rfc3987_syntax`` alone builds a grammar for 2.8 s), and the
    first figure creates plotly's validators and loads the template (~0.3 s more than the
    next one). On the loop, mid-experiment, that stalls every peer's media.
    """
    from plotly.graph_objs import _figurewidget  # noqa: F401  (go.FigureWidget is lazy)

    _base_figure("", 150)
