"""EstimateView: the estimate figure (capacity, estimate, target, send rate per flow), live."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

from ..stats.figures import estimate_figure
from ._live import LiveFigure

if TYPE_CHECKING:
    from ..stats.collector import StatsCollector

__all__ = ["EstimateView"]


class EstimateView(LiveFigure):
    """:func:`~rtclab.stats.figures.estimate_figure` of a collector's last ``window_s``
    seconds as a FigureWidget, redrawn in place at most ``max_rate_hz`` times a second.

    While the flows stay the same only the traces' points move (one update message); a new
    flow, or a series that appears, changes the subplots, so the figure is laid out anew.
    """

    def __init__(
        self,
        collector: StatsCollector,
        *,
        sender: str | Iterable[str] | None = None,
        receiver: str | Iterable[str] | None = None,
        window_s: float = 120.0,
        max_rate_hz: float = 1.0,
    ) -> None:
        if window_s <= 0 or not 0 < max_rate_hz <= 10:
            raise ValueError("window_s must be > 0 and max_rate_hz in (0, 10]")
        self.collector = collector
        self.sender = sender if sender is None or isinstance(sender, str) else tuple(sender)
        self.receiver = (
            receiver if receiver is None or isinstance(receiver, str) else tuple(receiver)
        )
        self.window_s, self.max_rate_hz = float(window_s), float(max_rate_hz)
        #: Redraws so far (each one message to the browser), and layouts among them.
        self.refreshes = self.layouts = 0
        self.figure = go.FigureWidget()
        self._shape: tuple[Any, ...] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_refresh = -math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):  # the refresh timer's clock
            self._loop = asyncio.get_running_loop()
        self._closed = False
        self.refresh()
        self._unsubscribe = collector.on_sample(self._on_sample)

    def _on_sample(self, rows: list[dict[str, Any]]) -> None:
        if not self._closed:
            self._schedule_refresh()  # the rows are read from the collector then

    def refresh(self) -> None:
        """Redraw from the collector's rows now."""
        if self._closed:
            return
        rows = self.collector.rows_within(self.window_s)
        fig = estimate_figure(rows, sender=self.sender, receiver=self.receiver)
        shape = tuple((t.name, t.yaxis) for t in fig.data)
        shape += tuple(a.text for a in fig.layout.annotations)
        if shape != self._shape:  # other subplots: lay the figure out anew
            self._shape = shape
            self.figure.data = ()
            self.figure.layout = fig.layout
            self.figure.add_traces(list(fig.data))
            self.layouts += 1
        else:
            with self.figure.batch_update():
                for old, new in zip(self.figure.data, fig.data, strict=True):
                    old.x, old.y = new.x, new.y
        self._last_refresh = self._loop.time() if self._loop is not None else -math.inf
        self.refreshes += 1
