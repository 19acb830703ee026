"""What a local :class:`~rtclab.peer.Peer` and a worker's
:class:`~rtclab.workers.RemotePeer` share: event listeners and the calls whose shape
must not drift apart.

Both report the same events to the same listeners (the lab, widgets and collectors take
either), so the listener list, the event log and how a failing listener is contained live
here once; each subclass says only how it carries a call out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..model import EventListener
from .connection import PeerEvent

__all__ = ["PeerHandle"]

log = logging.getLogger(__name__)


class PeerHandle:
    """Listeners, the event log and :meth:`record`, shared by local and remote peers."""

    name: str
    events: deque[PeerEvent]
    _listeners: list[EventListener]

    def add_listener(self, listener: EventListener) -> None:
        """``listener(peer, remote, event, value)`` is called for every event (cheap, sync)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, remote: str | None, event: str, value: Any = None) -> None:
        self.events.append(PeerEvent(time.time(), remote, event, value))
        for listener in list(self._listeners):
            try:
                listener(self.name, remote, event, value)
            except Exception:  # a broken listener must not break the peer
                log.exception("event listener failed")

    async def record(
        self,
        remote: str,
        path: str | Path,
        duration: float,
        *,
        kinds: Iterable[str] = ("audio", "video"),
    ) -> Path:
        """Record what ``remote`` sends for ``duration`` seconds to ``path`` (.mp4, .webm,
        ...; for a remote peer, a path on its worker's machine)."""
        return await self._record(remote, path, duration, list(kinds))

    async def _record(
        self, remote: str, path: str | Path, duration: float, kinds: list[str]
    ) -> Path:
        raise NotImplementedError
