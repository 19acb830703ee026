"""RemotePeerWidget: a peer in a lab worker as an ipywidget — states, previews, controls, chat.

The peer's video does not stream into the kernel: its worker sends small JPEGs (at most
5 per second, ``RemotePeer.request_previews``) while the widget is open, and the text
comes from the events the kernel already mirrors. Typed structurally (no import of
:mod:`rtclab.workers`, which sits above the widgets).
"""

from __future__ import annotations

import asyncio
import html
import logging
import weakref
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from ._peer_html import chat_html, failure_html
from ._preview import placeholder_jpeg

__all__ = ["RemotePeerWidget", "remote_peer_mimebundle"]

log = logging.getLogger(__name__)

_CSS_WIDTH = "200px"


def remote_connection_html(conn: Any) -> str:
    """One mirrored connection: state (and why it failed), time to connect, path."""
    colour = {"connected": "#2ca02c", "failed": "#d62728", "closed": "#777"}.get(
        conn.state, "#e69500"
    )
    took = f" in {conn.connect_ms:.0f} ms" if conn.connect_ms is not None else ""
    lines = [
        f"ICE <b>{html.escape(conn.ice_connection_state)}</b> · "
        f"<b style='color:{colour}'>{html.escape(conn.state)}</b>{took}"
    ]
    if conn.failure_reason:
        lines.append(f"<span style='color:#d62728'>{html.escape(conn.failure_reason)}</span>")
    path = conn.selected_pair
    lines.append(f"path <code>{html.escape(path)}</code>" if path else "path <i>not selected</i>")
    return "<div style='font-size:90%;line-height:1.35'>" + "<br>".join(lines) + "</div>"


class RemotePeerWidget(widgets.VBox):  # type: ignore[misc]
    """A live view and remote control of a :class:`~rtclab.workers.RemotePeer`."""

    def __init__(self, peer: Any, *, fps: float = 4.0, chat_lines: int = 12) -> None:
        self.peer = peer
        self.fps = min(float(fps), 5.0)
        self.chat_lines = chat_lines
        self.header = widgets.HTML()
        self.images: dict[str | None, widgets.Image] = {}
        self.infos: dict[str, widgets.HTML] = {}
        self.boxes: dict[str | None, widgets.VBox] = {}
        self.previews = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.mute_video = widgets.ToggleButton(description="Mute video", icon="video-slash")
        self.source = widgets.ToggleButtons(
            options=[("Camera", "camera"), ("Screen", "screen")],
            value=peer.video_source or "camera",
            disabled=peer.video_source is None,
        )
        self.leave_button = widgets.Button(description="Leave", icon="sign-out")
        self.chat_text = widgets.Text(placeholder="chat message", continuous_update=False)
        self.chat_send = widgets.Button(description="Send", icon="paper-plane")
        self.chat_log = widgets.HTML()
        self.status = widgets.HTML()
        controls = widgets.HBox([self.mute_video, self.source, self.leave_button])
        super().__init__(
            [self.header, self.previews, controls,
             widgets.HBox([self.chat_text, self.chat_send]), self.chat_log, self.status],
            layout=widgets.Layout(border="1px solid #bbb", padding="6px"),
        )  # fmt: skip
        self.add_class("rtclab-peer-widget")
        self._closed = False
        self._render_pending = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.mute_video.observe(lambda c: self._act(peer.set_muted("video", c["new"])), "value")
        self.source.observe(lambda c: self._act(peer.switch_video(c["new"])), "value")
        self.leave_button.on_click(lambda _: self._act(peer.leave()))
        self.chat_send.on_click(lambda _: self._send_chat())
        peer.add_listener(self._on_event)
        self._unhook = peer.add_preview_listener(self._on_preview)
        self._render()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a static snapshot: no loop to ask the worker with
        self._act(peer.request_previews(self.fps))

    def _act(self, awaitable: Any) -> None:
        """Run a command; its failure shows in the status line (never blocks)."""

        async def run() -> None:
            try:
                await awaitable
            except Exception as exc:
                self.status.value = failure_html(exc)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_chat(self) -> None:
        text = self.chat_text.value.strip()
        if text:
            self.chat_text.value = ""
            self._act(self.peer.send_chat(text))

    def _on_event(self, peer: str, remote: str | None, event: str, value: Any) -> None:
        if self._closed or self._render_pending:
            return
        self._render_pending = True
        asyncio.get_running_loop().call_soon(self._render)

    def _on_preview(self, remote: str | None, jpeg: bytes) -> None:
        image = self.images.get(remote)
        if image is not None and not self._closed:
            image.value = jpeg

    def _image(self, key: str | None) -> widgets.Image:
        if key not in self.images:
            self.images[key] = widgets.Image(
                value=self.peer.previews.get(key, placeholder_jpeg()),
                format="jpeg",
                layout=widgets.Layout(width=_CSS_WIDTH),
            )
        return self.images[key]

    def _render(self) -> None:
        self._render_pending = False
        peer = self.peer
        muted = [k for k, on in peer.muted.items() if on]
        self.header.value = (
            f"<b style='font-size:115%'>{html.escape(peer.name)}</b> · worker {peer.worker} · "
            f"room <code>{html.escape(peer.room)}</code> · {html.escape(peer.state)}"
            + (f" · muted: {', '.join(muted)}" if muted else "")
        )
        if None not in self.boxes:
            self.boxes[None] = widgets.VBox([widgets.HTML("<b>local</b>"), self._image(None)])
        for remote, conn in peer.connections.items():
            if remote not in self.boxes:
                self.infos[remote] = widgets.HTML()
                title = widgets.HTML(f"<b>from {html.escape(remote)}</b>")
                self.boxes[remote] = widgets.VBox([title, self._image(remote), self.infos[remote]])
            self.infos[remote].value = remote_connection_html(conn)
        shown = [None, *peer.connections]
        children = tuple(self.boxes[k] for k in shown)
        if self.previews.children != children:
            self.previews.children = children
        self.chat_log.value = chat_html(peer, self.chat_lines)
        self.leave_button.disabled = peer.state != "joined"

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self.peer.remove_listener(self._on_event)
            self._unhook()
            if self.peer.link.alive:
                self._act(self.peer.request_previews(0))
        super().close()


_widgets: weakref.WeakKeyDictionary[Any, RemotePeerWidget] = weakref.WeakKeyDictionary()


def remote_peer_mimebundle(peer: Any, include: Any = None, exclude: Any = None) -> Any:
    """IPython's formatter for a ``RemotePeer``: one live widget per peer."""
    widget = _widgets.get(peer)
    if widget is None or widget._closed:
        widget = _widgets[peer] = RemotePeerWidget(peer)
    return widget._repr_mimebundle_(include=include, exclude=exclude)
