"""RemotePeer: the kernel's handle on a peer that runs in a worker process.

Same calls as a :class:`~rtclab.peer.Peer` (``join``, ``leave``, ``close``,
``wait_connected``, ``send_chat``, ``send_cursor``, ``switch_video``, ``set_max_bitrate``,
``set_video_format``, ``set_muted``, ``record``, ``candidates``, ``estimates``,
``latest_frame``) and the same state names (``state``, ``connections``, ``chat_log``,
``video_source``, ``muted``), rebuilt from the peer's events (:mod:`.mirror`). Methods a
``Peer`` runs synchronously send the command and return at once with a future: ``await``
it to know the worker carried it out; a failure nobody awaits still lands as an ``error``
event. ``candidates()`` and ``estimates()`` stay synchronous (``lab.candidates`` is a
property): the worker streams those rows when they change, nothing in a steady state. A
frame is too big to stream, so ``latest_frame`` asks for one: ``await`` it. The peer's
tracks cannot cross the process line: ``local_video`` and ``preview_track()`` raise
(``previews`` has a JPEG).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..ice.inspect import candidates_frame
from ..peer.connection import ChatMessage, PeerEvent
from ..peer.estimation import estimates_frame
from ..peer.handle import PeerHandle
from .mirror import ConnectionMirror, Mirrored, PeerMirror
from .protocol import frame_from_wire

if TYPE_CHECKING:
    import av
    import pandas as pd
    from aiortc import MediaStreamTrack, RTCPeerConnection

    from ..model import ConnectionCounters, EventListener

__all__ = ["RemotePeer"]

log = logging.getLogger(__name__)

PreviewListener = Callable[[str | None, bytes], object]
_KEEP_ESTIMATES = 10_000  # per remote, as a local peer's estimator keeps


class WorkerLink(Protocol):
    """What a remote peer needs of its worker's link (:class:`.pool.WorkerLink`)."""

    @property
    def index(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    def request(self, message: dict[str, Any]) -> asyncio.Future[Any]: ...

    def forget(self, peer: RemotePeer) -> None: ...


class RemotePeer(PeerHandle):
    """A peer in worker ``worker`` (see :class:`~rtclab.Lab` ``workers=``), seen from the
    kernel. Its stats rows, frames and events land in the lab beside local peers'.

    ``state`` is ``new``, ``joining``, ``joined``, ``left``, or ``failed`` once its worker
    died (every connection then ``failed`` too, and pending calls raise
    :class:`ConnectionError`). ``previews`` holds the newest small JPEG per video (``None``:
    what it sends, else per remote) while :meth:`request_previews` is on (its widget turns
    it on).
    """

    def __init__(
        self, name: str, room: str, link: WorkerLink, url: str, options: dict[str, Any]
    ) -> None:
        self.name = name
        self.link = link
        self.signaling_url = url
        self.options = options
        self.mirror = PeerMirror(name, room)
        self.mirror.video_source = "camera" if options.get("video", True) else None
        self.events: deque[PeerEvent] = deque(maxlen=int(options.get("keep_events", 10_000)))
        self.previews: dict[str | None, bytes] = {}
        self.cursor_positions: dict[str, tuple[float, float]] = {}
        self._listeners: list[EventListener] = []
        self._preview_listeners: list[PreviewListener] = []
        self._created = False
        self._changed = asyncio.Event()
        self._candidates: list[dict[str, Any]] = []
        self._estimates: dict[str, deque[dict[str, Any]]] = {}

    # -- state (the mirror's) -----------------------------------------------------------

    @property
    def worker(self) -> int:
        """Which worker runs this peer (its index in the lab's pool)."""
        return self.link.index

    room: Mirrored[str] = Mirrored()
    state: Mirrored[str] = Mirrored()
    connections: Mirrored[dict[str, ConnectionMirror]] = Mirrored()
    chat_log: Mirrored[list[ChatMessage]] = Mirrored()
    video_source: Mirrored[str | None] = Mirrored()
    muted: Mirrored[dict[str, bool]] = Mirrored()
    max_bitrate: Mirrored[dict[str, int | None]] = Mirrored()

    def stats_targets(self) -> Iterable[tuple[str, RTCPeerConnection, ConnectionCounters]]:
        """Nothing to poll here: the worker polls and streams the rows."""
        return ()

    def __repr__(self) -> str:
        states = ", ".join(f"{r}:{c.state}" for r, c in self.connections.items())
        return (
            f"<RemotePeer {self.name!r} on worker {self.worker} room={self.room!r} "
            f"{self.state} [{states}]>"
        )

    # -- events ---------------------------------------------------------------------------

    def _emit(self, remote: str | None, event: str, value: Any = None) -> None:
        """An event from the worker (or about it): fold it into the state, tell listeners."""
        self.mirror.apply(remote, event, value)
        if event == "closed" and remote is not None:
            self._estimates.pop(remote, None)  # as a local peer forgets a closed connection's
        self._changed.set()
        super()._emit(remote, event, value)

    def _worker_lost(self, reason: str) -> None:
        for remote in self.mirror.fail(reason):
            self._emit(remote, "failed", reason)
        self._emit(None, "error", reason)

    # -- what the worker streams: candidates, estimates; frames on request ---------------

    def _table(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Candidate rows (the peer's whole set, sent when it changed) or new estimate rows."""
        rows = [{**row, "peer": self.name} for row in rows]  # never another peer's name
        if table == "candidates":
            self._candidates = rows
            return
        for row in rows:
            remote = str(row.get("remote"))
            self._estimates.setdefault(remote, deque(maxlen=_KEEP_ESTIMATES)).append(row)

    def candidates(self) -> pd.DataFrame:
        """As :meth:`Peer.candidates`: the worker sends them after each ICE event (so they
        are here when :meth:`wait_connected` returns), trickled ones at its next poll."""
        return candidates_frame(self._candidates)

    def estimates(self) -> pd.DataFrame:
        """As :meth:`Peer.estimates`: up to the worker's last stats poll."""
        return estimates_frame([row for rows in self._estimates.values() for row in rows])

    async def latest_frame(self, remote: str) -> av.VideoFrame | None:
        """As :meth:`Peer.latest_frame`, fetched from the worker (``await`` it): the newest
        frame decoded from ``remote``, pixel for pixel, or ``None`` before the first."""
        data = await self._command({"op": "frame", "peer": self.name, "remote": remote})
        return None if data is None else await asyncio.to_thread(frame_from_wire, data)

    @property
    def local_video(self) -> MediaStreamTrack | None:
        """Not here: the track lives in the worker (``previews[None]`` shows what it sends)."""
        raise RuntimeError(self._no_tracks("local_video"))

    def preview_track(self) -> MediaStreamTrack | None:
        """Not here: the track lives in the worker (:meth:`request_previews` instead)."""
        raise RuntimeError(self._no_tracks("preview_track()"))

    def _no_tracks(self, what: str) -> str:
        return (
            f"{what}: peer {self.name!r} runs in worker {self.worker} and its media tracks "
            "cannot cross the process line; its widget, request_previews() and previews[None] "
            "show what it sends, latest_frame(remote) what it receives"
        )

    # -- previews -------------------------------------------------------------------------

    def add_preview_listener(self, listener: PreviewListener) -> Callable[[], None]:
        """``listener(remote, jpeg)`` for each new preview (``remote`` ``None``: local)."""
        self._preview_listeners.append(listener)
        return lambda: self._preview_listeners.remove(listener)

    def _preview(self, remote: str | None, jpeg: bytes) -> None:
        self.previews[remote] = jpeg
        for listener in list(self._preview_listeners):
            try:
                listener(remote, jpeg)
            except Exception:
                log.exception("preview listener failed")

    def request_previews(self, fps: float = 4.0) -> asyncio.Future[Any]:
        """Ask the worker for JPEG previews at ``fps`` (at most 5; 0 stops them)."""
        return self._command({"op": "preview", "peer": self.name, "fps": fps})

    # -- calls ----------------------------------------------------------------------------

    def _command(self, message: dict[str, Any]) -> asyncio.Future[Any]:
        future = self.link.request(message)

        def report(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is not None:
                exc = done.exception()
                what = message.get("method", message.get("op"))
                self._emit(None, "error", f"{what} failed: {type(exc).__name__}: {exc}")

        future.add_done_callback(report)
        return future

    def _call(self, method: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        message = {"op": "call", "peer": self.name, "method": method, "args": list(args),
                   "kwargs": kwargs}  # fmt: skip
        return self._command(message)

    async def create(self) -> RemotePeer:
        """Make the peer in its worker without joining (``lab.peer(..., join=False)``)."""
        if not self._created:
            await self._command(self._create_message(join=False))
            self._created = True
        return self

    def _create_message(self, *, join: bool) -> dict[str, Any]:
        return {"op": "create", "peer": self.name, "url": self.signaling_url,
                "room": self.mirror.room, "options": self.options, "join": join}  # fmt: skip

    async def join(self, room: str | None = None) -> RemotePeer:
        if room is not None:
            self.mirror.room = room
        if self.state in ("joining", "joined"):
            raise RuntimeError(f"peer {self.name!r} has already joined room {self.room!r}")
        self.mirror.state = "joining"
        try:
            if not self._created:
                self._created = True
                await self._command(self._create_message(join=True))
            else:
                await self._call("join", room)
        except BaseException:
            if self.mirror.state == "joining":
                self.mirror.state = "new"
            raise
        return self

    async def leave(self) -> None:
        if self._created and self.link.alive:
            await self._call("leave")

    async def close(self) -> None:
        if self._created and self.link.alive:
            with contextlib.suppress(ConnectionError):
                await self._call("close")
        self.link.forget(self)

    async def wait_connected(
        self, count: int | None = None, timeout: float | None = None, *, channels: bool = True
    ) -> list[ConnectionMirror]:
        """As :meth:`Peer.wait_connected`, run in the worker; returns the connections."""
        remotes = await self._call("wait_connected", count, timeout, channels=channels)
        return [self.connections[r] for r in remotes if r in self.connections]

    async def send_chat(self, text: str) -> int:
        sent = int(await self._call("send_chat", text))
        self.chat_log.append(ChatMessage(time.time(), self.name, text, None))
        return sent

    def send_cursor(self, x: float, y: float) -> int:
        """Send a cursor position (fire and forget, as the channel is unreliable anyway);
        returns how many connections are known to have their channels open."""
        self._call("send_cursor", x, y)
        return sum(1 for c in self.connections.values() if "cursors" in c.channels)

    def switch_video(self, source: str) -> asyncio.Future[Any]:
        if self.video_source is None:
            raise RuntimeError(f"peer {self.name!r} has no video (created with video=False)")
        if source not in ("camera", "screen"):
            raise ValueError("source must be 'camera' or 'screen'")
        return self._call("switch_video", source)

    def set_max_bitrate(self, kbps: float | None) -> asyncio.Future[Any]:
        if kbps is not None and kbps <= 0:
            raise ValueError("kbps must be positive, or None to remove the cap")
        return self._call("set_max_bitrate", kbps)

    def set_video_format(
        self, width: int | None = None, height: int | None = None, fps: float | None = None
    ) -> asyncio.Future[Any]:
        if self.video_source is None:
            raise RuntimeError(f"peer {self.name!r} has no video (created with video=False)")
        return self._call("set_video_format", width, height, fps)

    def set_video_source(self, source: str | Path) -> asyncio.Future[Any]:
        """Send a media file (a path on the worker's machine) as the camera."""
        return self._call("set_video_source", str(source))

    def set_muted(self, kind: str, muted: bool = True) -> asyncio.Future[Any]:
        if kind not in ("audio", "video"):
            raise ValueError("kind must be 'audio' or 'video'")
        return self._call("set_muted", kind, bool(muted))

    async def _record(
        self, remote: str, path: str | Path, duration: float, kinds: list[str]
    ) -> Path:
        written = await self._call("record", remote, str(path), duration, kinds=kinds)
        return Path(written)
