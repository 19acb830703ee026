"""The state a :class:`~rtclab.peer.Peer` shares between its parts, declared once.

``Peer`` is assembled from mixins, one concern each (:mod:`.negotiation`,
:mod:`.sending`, :mod:`.recovery`); this base declares, for the type checker, the
attributes ``Peer.__init__`` sets and the methods one part calls on another. At run time
it adds only what it inherits from :class:`.handle.PeerHandle` (listeners, the event log,
``record``), which a worker's ``RemotePeer`` shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from aiortc import MediaStreamTrack

from ..ice.config import IceConfig
from ..signaling.client import SignalingClient
from .connection import ChatMessage, RemoteConnection, Role
from .handle import PeerHandle
from .relay import SourceRelay
from .resilience import Resilience

if TYPE_CHECKING:
    from ..net.base import NetworkAttachment

VideoSource = Literal["camera", "screen"]


class PeerBase(PeerHandle):
    """Attributes and cross-part methods of a peer (annotations only)."""

    room: str
    signaling_url: str
    ice: IceConfig
    network: NetworkAttachment | None
    resilience: Resilience
    data: bool
    receive: bool
    state: Literal["new", "joining", "joined", "left"]
    connections: dict[str, RemoteConnection]
    chat_log: list[ChatMessage]
    cursor_positions: dict[str, tuple[float, float]]
    video_source: VideoSource | None
    muted: dict[str, bool]
    max_bitrate: dict[str, int | None]
    _present: set[str]
    _tasks: set[asyncio.Task[Any]]
    _client: SignalingClient | None
    _loop_task: asyncio.Task[None] | None
    _relay: SourceRelay
    _camera: MediaStreamTrack | None
    _screen: MediaStreamTrack | None
    _audio: MediaStreamTrack | None
    _size: tuple[int, int]
    _fps: float
    _chat_seq: int

    if TYPE_CHECKING:

        def _timing(
            self, conn: RemoteConnection, event: str, start: float | None, end: float | None
        ) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
        def _new_connection(self, remote: str, role: Role) -> RemoteConnection: ...
        async def _close_connection(self, remote: str, *, wait: bool = True) -> None: ...
        def _fail(self, conn: RemoteConnection, reason: str) -> None: ...
        def _diagnose(self, conn: RemoteConnection, what: str) -> str: ...
        def _attach_channel(self, conn: RemoteConnection, channel: Any) -> None: ...
        def _add_media(self, conn: RemoteConnection, *, answering: bool = False) -> None: ...
        async def _guard(
            self, conn: RemoteConnection, what: str, step: Awaitable[None]
        ) -> None: ...
        async def _offer(self, conn: RemoteConnection) -> None: ...
