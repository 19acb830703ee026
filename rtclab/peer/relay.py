"""One local source shared by every connection, read only when a subscriber asks.

aiortc's ``MediaRelay`` reads its source in a task of its own at the source's pace, whatever
the subscribers take: a 30 fps test pattern is drawn 30 times a second even when saturated
encoders take 14, and each frame nobody encodes still costs the event loop its drawing
(at 20-32 pairs, more loop time than anything else the lab does). :class:`SourceRelay`
reads the source when a subscriber waits for a frame and has none pending, and hands that
frame to every subscriber (the newest replaces one not yet taken, as an unbuffered
``MediaRelay`` does). Paced sources (:mod:`.media`) skip the frames nobody asked for, so
frame ids still show what a saturated sender dropped, as they did when dropped frames were
drawn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .media import PacedTrack

__all__ = ["RelayedTrack", "SourceRelay"]

_NOTHING = object()


class _Feed:
    """One source and its subscribers; at most one read of the source in flight."""

    def __init__(self, source: MediaStreamTrack) -> None:
        self.source = source
        self.subscribers: set[RelayedTrack] = set()
        self.ended = False
        self.reading: asyncio.Future[None] | None = None  # done when the read in flight is

    def read(self) -> asyncio.Future[None]:
        """The read in flight, or a new one in a task of its own: waiters share it."""
        if self.reading is None:
            done = self.reading = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._next(done))
        return self.reading

    async def read_here(self) -> None:
        """A read in the caller's task (no task per frame), shared all the same."""
        done = self.reading = asyncio.get_running_loop().create_future()
        await self._next(done)

    async def _next(self, done: asyncio.Future[None]) -> None:
        frame: Any = _NOTHING
        if isinstance(self.source, PacedTrack):
            self.source.skip_missed()  # live: the frame due now, not a backlog
        try:
            frame = await self.source.recv()
        except MediaStreamError:
            frame = None
            self.ended = True
        except Exception as exc:
            done.set_exception(exc)  # waiters see it too
            raise
        finally:
            self.reading = None
            if frame is not _NOTHING:
                for track in self.subscribers:
                    track._pending = frame
            if not done.done():
                done.set_result(None)  # cancelled mid-read: waiters read again


class RelayedTrack(MediaStreamTrack):
    """A subscriber's copy of a relayed source (``stop()`` it to unsubscribe)."""

    def __init__(self, relay: SourceRelay, feed: _Feed) -> None:
        super().__init__()
        self.kind = feed.source.kind
        self._relay = relay
        self._feed = feed
        self._pending: Any = _NOTHING

    async def recv(self) -> Any:
        feed = self._feed
        while self._pending is _NOTHING:
            if self.readyState != "live" or feed.ended:
                raise MediaStreamError
            if feed.reading is None and len(feed.subscribers) == 1:
                await feed.read_here()  # alone (one remote): read in this task
            else:
                # shielded: a subscriber that gives up (its sender stopping) leaves the read
                # to the others rather than cancelling it under them
                await asyncio.shield(feed.read())
        frame, self._pending = self._pending, _NOTHING
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        self._relay._unsubscribe(self)


class SourceRelay:
    """Local sources (test pattern, tone, file) fed to many consumers, read on demand."""

    def __init__(self) -> None:
        self._feeds: dict[MediaStreamTrack, _Feed] = {}

    def subscribe(self, source: MediaStreamTrack) -> RelayedTrack:
        """A new copy of ``source`` for one consumer (a connection's sender, a preview)."""
        feed = self._feeds.get(source)
        if feed is None or feed.ended:
            feed = self._feeds[source] = _Feed(source)
        track = RelayedTrack(self, feed)
        feed.subscribers.add(track)
        return track

    def _unsubscribe(self, track: RelayedTrack) -> None:
        feed = track._feed
        feed.subscribers.discard(track)
        if not feed.subscribers and self._feeds.get(feed.source) is feed:
            del self._feeds[feed.source]  # an unused source is read by nobody
