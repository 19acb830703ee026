"""What the live plotly views (Dashboard, EstimateView) share: showing, refreshing at a
bounded rate, and closing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go


class LiveFigure:
    """A view that owns a FigureWidget fed by a collector subscription and a refresh timer."""

    figure: go.FigureWidget
    max_rate_hz: float
    _closed: bool
    _timer: asyncio.TimerHandle | None
    _last_refresh: float  # the loop's time of the last refresh sent
    _loop: asyncio.AbstractEventLoop | None
    _unsubscribe: Callable[[], None]

    def refresh(self) -> None:
        raise NotImplementedError

    def _schedule_refresh(self) -> None:
        """Refresh at most ``max_rate_hz`` times a second: on a timer from the last refresh,
        or at once when fed outside a loop (by hand, in a test)."""
        if self._timer is not None:
            return
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self.refresh()
                return
        delay = max(0.0, self._last_refresh + 1.0 / self.max_rate_hz - loop.time())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = self.figure._repr_mimebundle_(**kwargs)
        return bundle

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop following the collector and close the figure widget (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(Exception):
            self.figure.close()
