"""LinkControl: sliders that change a host's link while a call runs (delay, jitter, loss,
burst, rate, queue, up/down), emulated or namespace — so a class drags the loss slider and
watches freezes and the sender's target react.

Each change becomes a new :class:`~rtclab.net.Link` on the host (live: queues carry on) and
an event (peer ``"network"``, remote = the host, ``set-link``/``link-down``/``link-up``) in
the lab's events frame. A status line shows what the link does now (capacity, queue delay).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from ..model import EventListener
from ..net.events import change_link, change_link_now, current_link, describe_link
from ..net.link import Link

__all__ = ["LinkControl"]

_STYLE = {"description_width": "90px"}
_LAYOUT = {"width": "420px"}


def _listener(events: Any) -> EventListener | None:
    """A lab, a collector or a listener function -> the function events go to."""
    if events is None:
        return None
    collector = getattr(events, "collector", events)
    record = getattr(collector, "record_event", collector)
    return record if callable(record) else None


class LinkControl:
    """Live link sliders for ``host`` (an emulated :class:`~rtclab.net.Host` or a
    :class:`~rtclab.net.netns.NetnsHost`); changes go to ``events`` (a ``Lab``, a
    ``StatsCollector`` or an event listener). Display it, or ``widget`` in a layout.

    ``rate_kbps`` 0 means unlimited; ``queue_ms`` 0 means the queue is limited in bytes
    (``queue_bytes`` of the link). Set ``slider.value`` from code and the link follows.
    """

    def __init__(self, host: Any, events: Any = None, *, name: str | None = None) -> None:
        self.host = host
        self.name = name or str(getattr(host, "name", "host"))
        self._record = _listener(events)
        link = current_link(host)
        self.link = link
        slider = widgets.FloatSlider
        self.delay_ms = slider(value=link.delay_ms, min=0, max=1000, step=5, description="delay ms")
        self.jitter_ms = slider(
            value=link.jitter_ms, min=0, max=200, step=1, description="jitter ms"
        )
        self.loss = slider(
            value=link.loss, min=0, max=0.5, step=0.005, readout_format=".1%", description="loss"
        )
        self.burst = slider(value=link.burst, min=1, max=20, step=0.5, description="burst pkts")
        self.rate_kbps = slider(
            value=link.rate_kbps or 0, min=0, max=10_000, step=50, description="rate kbps"
        )
        self.queue_ms = slider(
            value=link.queue_ms or 0, min=0, max=2000, step=10, description="queue ms"
        )
        self.up = widgets.ToggleButton(
            value=link.up, description="link up", icon="plug", tooltip="take the link down/up"
        )
        self.sliders = (
            self.delay_ms, self.jitter_ms, self.loss, self.burst, self.rate_kbps, self.queue_ms
        )  # fmt: skip
        for control in self.sliders:
            control.style = _STYLE
            control.layout = widgets.Layout(**_LAYOUT)
            control.continuous_update = False  # one change per release, not per pixel
        self.status = widgets.HTML()
        for control in (*self.sliders, self.up):
            control.observe(self._changed, names="value")
        title = widgets.HTML(f"<b>link of {html.escape(self.name)}</b>")
        self.widget = widgets.VBox([title, *self.sliders, self.up, self.status])
        self._refresh: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_status())
        self._show()

    def _from_controls(self) -> Link:
        rate = self.rate_kbps.value or None
        queue_ms = self.queue_ms.value or None
        changes: dict[str, Any] = {
            "delay_ms": self.delay_ms.value,
            "jitter_ms": self.jitter_ms.value,
            "loss": min(self.loss.value, 0.999),
            "burst": self.burst.value,
            "queue_ms": queue_ms,
            "up": bool(self.up.value),
        }
        if rate != self.link.rate_kbps or (self.link.trace is None and self.link.schedule is None):
            # a rate set by hand replaces a schedule or trace; untouched, they stay
            changes.update(rate_kbps=rate, schedule=None, trace=None)
        return self.link.replace(**changes)

    def _changed(self, change: dict[str, Any]) -> None:
        link = self._from_controls()
        if link == self.link:
            return
        was_up, self.link = self.link.up, link
        if not change_link_now(self.host, link):
            asyncio.get_running_loop().create_task(change_link(self.host, link))
        if self._record is not None:
            event = "set-link" if link.up == was_up else ("link-up" if link.up else "link-down")
            self._record("network", self.name, event, describe_link(link))
        self.up.description = "link up" if link.up else "link down"
        self._show()

    def _show(self) -> None:
        text = html.escape(describe_link(self.link))
        state = self._state()
        if state:
            text += f"<br><small>now: {html.escape(state)}</small>"
        self.status.value = text

    def _state(self) -> str:
        """Capacity and queue delay of the host's downlink now (what it receives through)."""
        down = getattr(self.host, "down", None)
        if down is not None:
            with contextlib.suppress(RuntimeError):
                status = down.status(asyncio.get_running_loop().time())
                return _status_text(status)
            return ""
        impairment = getattr(self.host, "impairment", None)
        status = impairment.status().get("down") if impairment is not None else None
        return _status_text(status) if status else ""

    async def _refresh_status(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._show()

    def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _status_text(status: dict[str, Any]) -> str:
    capacity = status.get("capacity_kbps")
    rate = "unlimited" if capacity is None else f"{capacity:.0f} kbit/s"
    return f"capacity {rate}, queue delay {status.get('queue_delay_ms') or 0:.0f} ms"
