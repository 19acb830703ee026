"""Who hears what a signaling server sees: message, event and stats listeners.

A mixin of :class:`~.server.SignalingServer`, apart so that the adapter's module holds
only the adapter. Listeners are called synchronously and a failing one is logged, never
allowed to disturb the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..model import EventListener

__all__ = ["EventListener", "Listener", "Observers", "StatsListener"]

logger = logging.getLogger("rtclab.signaling")

Listener = Callable[[str, str, dict[str, Any]], None]
"""``listener(direction, who, message)``: direction is ``"in"`` or ``"out"``, ``who`` the
sender's / recipient's userId (``"conn-N"`` before it joined)."""

StatsListener = Callable[[str, str, "tuple[dict[str, Any], ...]"], None]
"""``listener(user, room, rows)``: a joined client's ``stats`` report (see
:class:`~.protocol.Stats`); ``user`` is the identity the server bound at ``join``."""


# EventListener (``listener(peer, remote, event, value)``) is the shared :mod:`rtclab.model`
# type: the server reports as ``peer`` its :attr:`name`, as ``remote`` the client's userId (or
# ``conn-N``), as ``event`` one of ``signaling-connected``, ``-joined``, ``-left``,
# ``-refused``, ``-reaped``, ``-slow-consumer``, ``-shutdown``.


class Observers:
    """Listener lists and the calls that reach them."""

    name: str
    """The ``peer`` column of the events reported (set by the server)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._event_listeners: list[EventListener] = []
        self._stats_listeners: list[StatsListener] = []

    def _listeners_changed(self) -> None:
        """Called when message listeners come or go (the server picks its path)."""

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(direction, who, message)`` for every message; returns a remover.

        Listeners run synchronously on the relay path: keep them quick. With none
        registered, relaying costs nothing extra.
        """
        self._listeners.append(listener)
        self._listeners_changed()
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        self._listeners_changed()

    def add_event_listener(self, listener: EventListener) -> Callable[[], None]:
        """Report connection lifecycle and refusals as ``listener(peer, remote, event,
        value)``, the lab's events-frame shape: ``server.add_event_listener(
        collector.record_event)``. Relayed messages are not events (use
        :meth:`add_listener`); returns a remover."""
        self._event_listeners.append(listener)
        return lambda: self.remove_event_listener(listener)

    def remove_event_listener(self, listener: EventListener) -> None:
        if listener in self._event_listeners:
            self._event_listeners.remove(listener)

    def add_stats_listener(self, listener: StatsListener) -> Callable[[], None]:
        """Call ``listener(user, room, rows)`` for every ``stats`` report of a joined client
        (browsers report their getStats this way; see :mod:`rtclab.web`); returns a remover.

        Reports are parsed only when they arrive, so the relay path costs nothing extra;
        with no listener they are accepted and dropped.
        """
        self._stats_listeners.append(listener)
        return lambda: self.remove_stats_listener(listener)

    def remove_stats_listener(self, listener: StatsListener) -> None:
        if listener in self._stats_listeners:
            self._stats_listeners.remove(listener)

    def _on_stats(self, user: str, room: str, rows: tuple[dict[str, Any], ...]) -> None:
        for listener in list(self._stats_listeners):
            try:
                listener(user, room, rows)
            except Exception:
                logger.exception("stats listener %r failed", listener)

    def _notify(self, direction: str, who: str, message: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(direction, who, message)
            except Exception:
                logger.exception("signaling listener %r failed", listener)

    def _event(self, remote: str | None, event: str, value: Any) -> None:
        for listener in list(self._event_listeners):
            try:
                listener(self.name, remote, event, value)
            except Exception:
                logger.exception("signaling event listener %r failed", listener)
