"""A remote peer's state, rebuilt in the kernel from the events it streams (pure).

A :class:`~rtclab.peer.Peer` already reports every change that matters as an event
(``joined``, ``connection-state``, ``failed``, ``datachannel-open``, ``chat``,
``video-source``, ...), so the kernel needs no second state protocol: it folds the
events into a :class:`PeerMirror`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, overload

from ..peer.connection import ChatMessage

__all__ = ["ConnectionMirror", "Mirrored", "PeerMirror"]

T = TypeVar("T")


@dataclass
class ConnectionMirror:
    """What the kernel knows of one remote peer's connection (names as on
    :class:`~rtclab.peer.RemoteConnection`)."""

    remote: str
    role: str | None = None
    state: str = "new"
    ice_connection_state: str = "new"
    signaling_state: str = "stable"
    failure_reason: str | None = None
    connect_ms: float | None = None
    selected_pair: str | None = None
    channels: set[str] = field(default_factory=set)  # labels of open data channels

    @property
    def usable(self) -> bool:
        return self.state == "connected" and bool(self.channels)


@dataclass
class PeerMirror:
    """A peer's state as its events tell it; :meth:`apply` one event at a time."""

    name: str
    room: str
    state: str = "new"
    video_source: str | None = None
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    max_bitrate: dict[str, int | None] = field(default_factory=lambda: {"video": None})
    connections: dict[str, ConnectionMirror] = field(default_factory=dict)
    chat_log: list[ChatMessage] = field(default_factory=list)

    def apply(self, remote: str | None, event: str, value: Any) -> None:
        if remote is None:
            self._apply_own(event, value)
            return
        if event == "connection-created":
            self.connections[remote] = ConnectionMirror(remote, role=str(value))
            return
        if event == "chat":
            self.chat_log.append(ChatMessage(time.time(), remote, str(value), remote))
            return
        conn = self.connections.get(remote)
        if conn is None:
            return
        if event == "connection-state":
            conn.state = str(value)
        elif event == "ice-connection-state":
            conn.ice_connection_state = str(value)
        elif event == "signaling-state":
            conn.signaling_state = str(value)
        elif event == "connected":
            conn.state = "connected"
            conn.connect_ms = float(value) if isinstance(value, (int, float)) else None
        elif event == "failed":
            conn.state, conn.failure_reason = "failed", str(value)
        elif event == "selected-pair":
            conn.selected_pair = str(value)
        elif event == "datachannel-open":
            conn.channels.add(str(value))
        elif event == "closed":
            self.connections.pop(remote, None)

    def _apply_own(self, event: str, value: Any) -> None:
        if event == "joined":
            self.state, self.room = "joined", str(value)
        elif event == "left":
            self.state = "left"
        elif event == "video-source":
            self.video_source = str(value)
        elif event in ("audio-muted", "video-muted"):
            self.muted[event.split("-")[0]] = bool(value)
        elif event == "max-bitrate-kbps":
            self.max_bitrate["video"] = None if value is None else int(float(value) * 1000)

    def fail(self, reason: str) -> list[str]:
        """The worker is gone: every connection ``failed`` with ``reason``; returns the
        remotes that were not failed already (each gets a ``failed`` event)."""
        newly = []
        for conn in self.connections.values():
            if conn.failure_reason is None:
                conn.state, conn.failure_reason = "failed", reason
                newly.append(conn.remote)
        self.state = "failed"
        return newly


class _HasMirror(Protocol):
    mirror: PeerMirror


class Mirrored(Generic[T]):
    """A read-only attribute of a handle that reads its :class:`PeerMirror`'s field of the
    same name: ``state: Mirrored[str] = Mirrored()`` (the mirror stays the one truth)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, handle: None, owner: type) -> Mirrored[T]: ...
    @overload
    def __get__(self, handle: _HasMirror, owner: type | None = None) -> T: ...
    def __get__(self, handle: _HasMirror | None, owner: type | None = None) -> T | Mirrored[T]:
        if handle is None:  # on the class (help(), docs): the descriptor itself
            return self
        value: T = getattr(handle.mirror, self.name)
        return value

    def __set__(self, handle: _HasMirror, value: T) -> None:
        raise AttributeError(f"{self.name} is read-only (the peer's events set it)")
