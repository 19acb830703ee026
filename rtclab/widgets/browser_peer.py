"""BrowserPeer: the notebook's own browser tab as a WebRTC peer in a lab room (anywidget).

The front end (``rtclab/web/widget.js`` with the page's ``mesh.js`` and ``stats.js``) runs
the same mesh as the stand-alone page. Its signaling goes through the widget comm, and this
kernel side relays it to the lab's signaling server with a :class:`SignalingClient`: the
browser never opens a socket of its own to the lab, so it works where only the Jupyter port
is reachable (Binder). Media still flows browser <-> peer directly (loopback when the
browser runs on the kernel's machine). Its ``stats`` reports take the same path, so its rows
join the lab's samples frame.

Jupyter handles comm messages between cells: a cell that blocks the kernel (a long ``await``)
also holds up this tab's negotiation until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import anywidget
import traitlets

from ..signaling.client import SignalingClient, SignalingError
from ..web import widget_esm

__all__ = ["BrowserPeer"]

log = logging.getLogger(__name__)


class BrowserPeer(anywidget.AnyWidget):  # type: ignore[misc]
    """Display it to make this tab join ``room`` as ``user`` (``lab.browser_peer(...)``).

    Each displayed view is a peer; a newer view takes the signaling connection over from an
    older one (a userId can be in a room once). :attr:`status` says where it stands and
    :attr:`stats_reports` counts the getStats reports relayed to the lab.
    """

    _esm = widget_esm()
    room = traitlets.Unicode("lab").tag(sync=True)
    user = traitlets.Unicode("notebook").tag(sync=True)
    status = traitlets.Unicode("waiting for the browser").tag(sync=True)
    audio = traitlets.Bool(False).tag(sync=True)
    """Microphone too (off by default: a notebook tab playing its own room back echoes)."""
    stats_interval_ms = traitlets.Int(1000).tag(sync=True)
    reports = traitlets.Int(0).tag(sync=True)
    """getStats reports relayed to the lab so far (shown in the widget's header)."""
    ice_servers = traitlets.List(traitlets.Dict()).tag(sync=True)
    """RTCIceServer dicts for the browser (TURN credentials: ``lab.browser_peer`` fills them
    in while ``lab.turn()`` runs); none on a plain loopback lab."""
    ice_transport_policy = traitlets.Enum(["all", "relay"], "all").tag(sync=True)
    """``"relay"``: the tab uses TURN relay candidates only (needs TURN in ``ice_servers``)."""

    def __init__(
        self, signaling_url: str, *, room: str = "lab", user: str = "notebook", **kwargs: Any
    ) -> None:
        super().__init__(room=room, user=user, **kwargs)
        self.signaling_url = signaling_url
        self.stats_reports = 0
        self.messages_relayed = 0
        self._client: SignalingClient | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pumps: list[asyncio.Task[Any]] = []
        self.on_msg(self._on_custom)

    # ---------------------------------------------------------------- comm -> kernel

    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """Runs in the kernel's loop for each ``model.send`` of the front end: never block."""
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "join":
            self._spawn(self._connect())
        elif kind == "signal":
            message = content.get("msg")
            if isinstance(message, dict) and self._outbox is not None:
                self._outbox.put_nowait(message)
        elif kind == "leave":
            self._spawn(self._disconnect("left"))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_event_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---------------------------------------------------------------- kernel <-> server

    async def _connect(self) -> None:
        await self._disconnect("reconnecting")
        self.status = "connecting to signaling"
        try:
            client = await SignalingClient.connect(self.signaling_url)
        except SignalingError as exc:
            self.status = f"error: {exc}"
            return
        self._client = client
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox = outbox
        await client.send({"type": "join", "roomId": self.room, "userId": self.user})
        self._pumps = [
            self._spawn(self._pump_in(client)),
            self._spawn(self._pump_out(client, outbox)),
        ]

    async def _pump_in(self, client: SignalingClient) -> None:
        """Server -> browser, in order; the status follows the room's answers."""
        async for message in client:
            kind = message.get("type")
            if kind == "room-joined":
                self.status = f"joined ({len(message.get('peers') or [])} others)"
            elif kind == "error":
                self.status = f"error: {message.get('code')}: {message.get('message')}"
            self.send({"kind": "signal", "msg": message})
        if self._client is client:
            self.status = "signaling closed"

    async def _pump_out(
        self, client: SignalingClient, outbox: asyncio.Queue[dict[str, Any]]
    ) -> None:
        """Browser -> server, in order (an offer before its trickled candidates)."""
        while True:
            message = await outbox.get()
            if message.get("type") in ("join", "leave"):
                continue  # the room and identity are the kernel's to choose
            if message.get("type") == "stats":
                self.stats_reports += 1
                self.reports = self.stats_reports
            else:
                self.messages_relayed += 1
            try:
                await client.send(message)
            except SignalingError:
                return

    async def _disconnect(self, status: str) -> None:
        client, self._client = self._client, None
        self._outbox = None
        current = asyncio.current_task()
        for task in self._pumps:
            if task is not current:
                task.cancel()
        self._pumps = []
        if client is None:
            return
        with contextlib.suppress(Exception):
            await client.send({"type": "leave"})
        await client.close()
        self.status = status

    async def aclose(self) -> None:
        """Leave the room and close the widget (the lab calls it on stop)."""
        await self._disconnect("closed")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.close()
