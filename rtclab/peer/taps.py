"""Copies of a received track (for a recorder, a preview), fed by the task that reads it.

A remote track has one reader, the peer's frame counter (``Peer._consume``), which must
read every frame anyway. aiortc's ``MediaRelay`` would put a task and a queue of its own
between the track and that reader: one more task switch per received frame, on every
stream, whether or not anybody else listens (at 32 pairs, ~500 frames a second on a
saturated loop). Here the reader hands each frame to the copies that exist, and to nobody
when none does. Same semantics as ``MediaRelay``'s proxies: a buffered copy queues every
frame, an unbuffered one keeps only the newest; a copy ends when its source ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

__all__ = ["TappedTrack", "Taps"]


class TappedTrack(MediaStreamTrack):
    """One consumer's copy of a received track (``stop()`` it when done)."""

    def __init__(self, source: MediaStreamTrack, *, buffered: bool) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self._buffered = buffered
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, frame: Any) -> None:
        """A frame from the source (``None``: it ended)."""
        if not self._buffered:
            while not self._queue.empty():  # keep only the newest, as MediaRelay does
                self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def recv(self) -> Any:
        frame = await self._queue.get() if self.readyState == "live" else None
        if frame is None:  # the source ended (or this copy was stopped)
            self.stop()
            raise MediaStreamError
        return frame


class Taps:
    """The copies of each received track, keyed by the track (a renegotiated connection's
    new track of the same kind gets copies of its own; the old one's end with it)."""

    def __init__(self) -> None:
        self._copies: dict[MediaStreamTrack, set[TappedTrack]] = {}
        self._ended: set[MediaStreamTrack] = set()

    def add(self, source: MediaStreamTrack, *, buffered: bool = True) -> TappedTrack:
        copy = TappedTrack(source, buffered=buffered)
        if source in self._ended or source.readyState != "live":
            copy.put(None)  # nothing will come: its first recv() ends it
        else:
            self._copies.setdefault(source, set()).add(copy)
            copy.on("ended", lambda: self._remove(copy))  # stopped: fed no more
        return copy

    def deliver(self, source: MediaStreamTrack, frame: Any) -> None:
        """Hand ``frame`` (read from ``source``) to its copies; nothing when there are none."""
        copies = self._copies.get(source)
        if copies:
            for copy in copies:
                copy.put(frame)

    def end(self, source: MediaStreamTrack) -> None:
        """``source`` ended: its copies end after the frames they still hold."""
        self._ended.add(source)
        for copy in self._copies.pop(source, ()):
            copy.put(None)

    def _remove(self, copy: TappedTrack) -> None:
        copies = self._copies.get(copy.source)
        if copies is not None:
            copies.discard(copy)
            if not copies:
                del self._copies[copy.source]
