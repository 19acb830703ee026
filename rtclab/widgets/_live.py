"""What the live plotly views (Dashboard, EstimateView) share: showing, refreshing at a
bounded rate (lower on a busy loop), and closing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

#: a refresh may take at most this share of the loop's time (more: refresh less often)
REFRESH_DUTY = 0.02
#: a refresh timer this late (s) means a saturated loop: refreshes spread out with the lag
LATE_S = 0.2
#: the longest a live view waits between refreshes, however busy the loop
MAX_INTERVAL_S = 5.0


def refresh_delay(min_interval: float, refresh_s: float, late_s: float) -> float:
    """Seconds from one refresh to the next: ``min_interval`` (the rate bound), longer when
    a refresh costs more than ``REFRESH_DUTY`` of the time (``refresh_s``: the last one's
    duration; a hundred traces take tens of milliseconds) or when the timer fired
    ``late_s`` > ``LATE_S`` late (the loop is saturated, and every peer's media waits behind
    the refresh): then 5x the lateness, at most ``MAX_INTERVAL_S``. A figure that lags is
    better than media that stalls."""
    delay = max(min_interval, refresh_s / REFRESH_DUTY)
    if late_s > LATE_S:
        delay = max(delay, 5 * late_s)
    return max(min_interval, min(delay, MAX_INTERVAL_S))


class LiveFigure:
    """A view that owns a FigureWidget fed by a collector subscription and a refresh timer."""

    figure: go.FigureWidget
    max_rate_hz: float
    _closed: bool
    _timer: asyncio.TimerHandle | None
    _last_refresh: float  # the loop's time of the last refresh sent
    _loop: asyncio.AbstractEventLoop | None
    _unsubscribe: Callable[[], None]
    #: seconds the last refresh took (subclasses' ``refresh`` set it)
    last_refresh_s: float = 0.0
    _next_delay: float | None = None  # from the last refresh to the next (refresh_delay)
    _timer_due: float = 0.0

    def refresh(self) -> None:
        raise NotImplementedError

    def _schedule_refresh(self) -> None:
        """Refresh at most ``max_rate_hz`` times a second (less on a busy loop:
        :func:`refresh_delay`): on a timer from the last refresh, or at once when fed
        outside a loop (by hand, in a test)."""
        if self._timer is not None:
            return
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self.refresh()
                return
        interval = self._next_delay or 1.0 / self.max_rate_hz
        delay = max(0.0, self._last_refresh + interval - loop.time())
        self._timer_due = loop.time() + delay
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        late = self._loop.time() - self._timer_due if self._loop is not None else 0.0
        self.refresh()
        self._next_delay = refresh_delay(1.0 / self.max_rate_hz, self.last_refresh_s, late)

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
