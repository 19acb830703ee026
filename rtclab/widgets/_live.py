"""What the live plotly views (Dashboard, EstimateView) share: showing and closing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go


class LiveFigure:
    """A view that owns a FigureWidget fed by a collector subscription and a refresh timer."""

    figure: go.FigureWidget
    _closed: bool
    _timer: asyncio.TimerHandle | None
    _unsubscribe: Callable[[], None]

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
