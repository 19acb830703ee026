"""PeerWidget: a Peer as an ipywidget — states, ICE path, video previews, controls, chat, counters.

Everything runs in the loop that created the widget (a Jupyter kernel's): peer events and a
periodic task refresh the text, and previews are JPEG-encoded in a worker thread so the loop
never waits for a codec. Controls schedule coroutines and return at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import threading
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import av
import ipywidgets as widgets  # type: ignore[import-untyped]

from ._peer_html import chat_html, connection_html, failure_html, strip_tags
from ._preview import JpegEncoder, placeholder_jpeg

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from ..peer.peer import Peer

__all__ = ["PeerWidget"]

log = logging.getLogger(__name__)

_PREVIEW_CSS_WIDTH = "240px"
_STATIC_NOTE = (
    "No running asyncio loop: this is a static snapshot with controls disabled. Display the "
    "peer from a Jupyter cell (the kernel runs a loop) for live updates."
)


class _RemoteView:
    """The part of the widget for one remote: title, received-video preview and its numbers."""

    def __init__(self, remote: str, max_width: int) -> None:
        self.remote = remote
        self.title = widgets.HTML(f"<b>from {html.escape(remote)}</b>")
        self.image = widgets.Image(
            value=placeholder_jpeg(), format="jpeg", layout=widgets.Layout(width=_PREVIEW_CSS_WIDTH)
        )
        self.info = widgets.HTML()
        self.box = widgets.VBox(
            [self.title, self.image, self.info],
            layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px"),
        )
        self.encoder = JpegEncoder(max_width=max_width)
        self.encoded: object | None = None  # the frame the image shows (to skip re-encoding)

    def close(self) -> None:
        for w in (self.title, self.image, self.info, self.box):
            w.close()


class PeerWidget(widgets.VBox):  # type: ignore[misc]
    """A live view and remote control of one :class:`~rtclab.peer.Peer`.

    Shows identity and room; per remote the signaling / ICE / connection state (and the
    failure reason), the selected ICE path, counters and the received video; the local video
    as sent (black while muted); and controls: mute audio/video, camera/screen, chat,
    leave/rejoin. ``fps`` bounds the preview rate (each preview is one JPEG per tick at most,
    and a tick is skipped while the previous encode is still running).

    :meth:`close` stops the widget's tasks; :meth:`aclose` also waits for them. Created with
    no running loop, the widget is a static snapshot (controls disabled, a note says why).
    """

    def __init__(
        self, peer: Peer, *, fps: float = 4.0, max_width: int = 320, chat_lines: int = 12
    ) -> None:
        if not 0 < fps <= 15:
            raise ValueError("fps must be in (0, 15]")
        self.peer = peer
        self.fps = float(fps)
        self.max_width = max_width
        self.chat_lines = chat_lines
        self.header = widgets.HTML()
        self.status = widgets.HTML()
        self.local_title = widgets.HTML()
        self.local_image = widgets.Image(
            value=placeholder_jpeg(), format="jpeg", layout=widgets.Layout(width=_PREVIEW_CSS_WIDTH)
        )
        self.local_box = widgets.VBox(
            [self.local_title, self.local_image],
            layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px"),
        )
        self.previews = widgets.HBox([self.local_box], layout=widgets.Layout(flex_flow="row wrap"))
        self.mute_audio = widgets.ToggleButton(description="Mute audio", icon="microphone-slash")
        self.mute_video = widgets.ToggleButton(description="Mute video", icon="video-slash")
        self.video_source = widgets.ToggleButtons(
            options=[("Camera", "camera"), ("Screen", "screen")],
            value=peer.video_source or "camera",
            style={"button_width": "84px"},
        )
        self.leave_button = widgets.Button(description="Leave", icon="sign-out")
        self.rejoin_button = widgets.Button(description="Rejoin", icon="sign-in")
        self.chat_text = widgets.Text(placeholder="chat message", continuous_update=False)
        self.chat_send = widgets.Button(description="Send", icon="paper-plane")
        self.chat_log = widgets.HTML()
        self.remotes: dict[str, _RemoteView] = {}
        controls = widgets.HBox(
            [
                self.mute_audio,
                self.mute_video,
                self.video_source,
                self.leave_button,
                self.rejoin_button,
            ],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        self.chat_box = widgets.HBox([self.chat_text, self.chat_send])
        self._inputs = [*controls.children, self.chat_text, self.chat_send]
        self._own = [
            self.header,
            self.status,
            self.local_title,
            self.local_image,
            self.local_box,
            self.previews,
            *self._inputs,
            self.chat_log,
            controls,
            self.chat_box,
        ]
        super().__init__(
            [self.header, self.previews, controls, self.chat_box, self.chat_log, self.status],
            layout=widgets.Layout(border="1px solid #bbb", padding="6px"),
        )
        self.add_class("rtclab-peer-widget")
        self._local_encoder = JpegEncoder(max_width=max_width)
        self._local_source: MediaStreamTrack | None = None
        self._local_track: MediaStreamTrack | None = None
        self._local_frame: av.VideoFrame | None = None
        self._local_encoded: tuple[int, bool] | None = None
        self._chat_rendered = -1
        self._syncing = False
        self._closed = False
        self._render_pending = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._puller: asyncio.Task[None] | None = None
        self._encoding: asyncio.Task[None] | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.get_ident()

        self.mute_audio.observe(lambda c: self._on_mute("audio", bool(c["new"])), "value")
        self.mute_video.observe(lambda c: self._on_mute("video", bool(c["new"])), "value")
        self.video_source.observe(lambda c: self._on_source(str(c["new"])), "value")
        self.leave_button.on_click(lambda _: self._act("leave", peer.leave()))
        self.rejoin_button.on_click(lambda _: self._act("rejoin", self._rejoin()))
        self.chat_send.on_click(lambda _: self._on_send())

        self._render()
        if self._loop is None:
            self._snapshot_previews()
            for control in self._inputs:
                control.disabled = True
            self.status.value = f"<i>{html.escape(_STATIC_NOTE)}</i>"
            return
        peer.add_listener(self._on_event)
        self._ticker = self._spawn(self._tick(), "ticker")

    # -- state -----------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the widget follows the peer (a loop was running and it is not closed)."""
        return self._loop is not None and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        assert self._loop is not None
        task = self._loop.create_task(coro, name=f"rtclab-peerwidget-{self.peer.name}-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- controls (never block: each schedules a coroutine) --------------------------------

    def _act(self, what: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the widget's loop; show its outcome in the status line."""
        if not self.live:
            coro.close()
            return
        assert self._loop is not None

        async def run() -> None:
            try:
                await coro
            except Exception as exc:
                self.status.value = failure_html(exc, what)
            else:
                self.status.value = ""
            finally:
                self._render()

        if threading.get_ident() == self._thread:
            task = asyncio.ensure_future(run(), loop=self._loop)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:  # a comm message handled on another thread (e.g. an ipykernel subshell)
            asyncio.run_coroutine_threadsafe(run(), self._loop)

    def _on_mute(self, kind: str, muted: bool) -> None:
        if self._syncing:
            return

        async def mute() -> None:
            self.peer.set_muted("audio" if kind == "audio" else "video", muted)

        self._act(f"{'mute' if muted else 'unmute'} {kind}", mute())

    def _on_source(self, source: str) -> None:
        if self._syncing:
            return

        async def switch() -> None:
            self.peer.switch_video("screen" if source == "screen" else "camera")

        self._act(f"switch to {source}", switch())

    def _on_send(self) -> None:
        text = self.chat_text.value.strip()
        if not text:
            return
        self.chat_text.value = ""

        async def send() -> None:
            await self.peer.send_chat(text)  # raises, with the reason, when nobody can get it

        self._act("send chat", send())

    async def _rejoin(self) -> None:
        await self.peer.join()

    # -- updates ---------------------------------------------------------------------------

    def _on_event(self, peer: str, remote: str | None, event: str, value: Any) -> None:
        """Peer listener: coalesce bursts of events into one render on the next loop turn."""
        if self._loop is None or self._closed:
            return
        if self._ticker is None or self._ticker.done():
            self._ticker = self._spawn(self._tick(), "ticker")
        if self._render_pending:
            return
        self._render_pending = True
        self._loop.call_soon(self._render_soon)

    def _render_soon(self) -> None:
        self._render_pending = False
        if not self._closed:
            self._render()

    async def _tick(self) -> None:
        """Refresh text and previews every 1/fps s while the peer is in a room.

        A peer that left (or was closed, e.g. by ``lab.stop()``) has nothing to show: the
        ticker then ends, so a forgotten widget of a stopped lab keeps no task; the next
        peer event (``joined``) starts it again.
        """
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        next_tick = loop.time()
        while True:
            if self.peer.state in ("new", "left") and not self.peer.connections:
                self._stop_local()
                self._render()
                return
            try:
                self._follow_local_source()
                self._render()
                self._start_encode()
            except Exception:  # one bad tick must not end the widget
                log.exception("PeerWidget %s: refresh failed", self.peer.name)
            next_tick += period
            delay = next_tick - loop.time()
            if delay < 0:  # behind (busy loop): skip ticks instead of bursting
                next_tick, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    def _follow_local_source(self) -> None:
        """(Re)subscribe the local preview when the peer switched camera/screen."""
        source = self.peer.local_video
        if source is self._local_source:
            return
        self._stop_local()
        self._local_source = source
        track = self.peer.preview_track()
        if track is not None:
            self._local_track = track
            self._puller = self._spawn(self._pull(track), "local-preview")

    async def _pull(self, track: MediaStreamTrack) -> None:
        """Keep the latest local frame (the relay drops the others: no queue builds up)."""
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self._local_frame = frame

    def _stop_local(self) -> None:
        self._local_source = None
        if self._puller is not None:
            self._puller.cancel()
            self._puller = None
        if self._local_track is not None:
            self._local_track.stop()
            self._local_track = None

    def _encode_jobs(self) -> list[tuple[JpegEncoder, av.VideoFrame, bool, Any]]:
        """Frames that changed since the last encode, paired with their encoder and image."""
        jobs: list[tuple[JpegEncoder, av.VideoFrame, bool, Any]] = []
        frame, muted = self._local_frame, bool(self.peer.muted.get("video"))
        if frame is not None and self._local_encoded != (id(frame), muted):
            self._local_encoded = (id(frame), muted)
            jobs.append((self._local_encoder, frame, muted, self.local_image))
        for remote, view in self.remotes.items():
            conn = self.peer.connections.get(remote)
            latest = conn.latest_frame if conn is not None else None
            if latest is not None and latest is not view.encoded:
                view.encoded = latest
                jobs.append((view.encoder, latest, False, view.image))
        return jobs

    def _start_encode(self) -> None:
        if self._encoding is not None and not self._encoding.done():
            return  # the previous encode is still running: skip this tick
        jobs = self._encode_jobs()
        if jobs:
            self._encoding = self._spawn(self._encode(jobs), "encode")

    async def _encode(self, jobs: list[tuple[JpegEncoder, av.VideoFrame, bool, Any]]) -> None:
        results = await asyncio.to_thread(_encode_all, jobs)
        if self._closed:
            return
        for (_, _, _, image), data in zip(jobs, results, strict=True):
            if data:
                image.value = data

    def _snapshot_previews(self) -> None:
        """Static mode: encode what is there once, synchronously (no loop to offload to)."""
        source = self.peer.local_video
        self._sync_remote_views()
        for (_, _, _, image), data in zip(
            jobs := self._encode_jobs(), _encode_all(jobs), strict=True
        ):
            if data:
                image.value = data
        if source is None:
            self.local_title.value = "<b>local</b>: no video"

    # -- rendering (cheap string building; values are only sent when they change) ---------

    def _render(self) -> None:
        peer = self.peer
        self._sync_remote_views()
        muted = [kind for kind, on in peer.muted.items() if on]
        self._set(
            self.header,
            f"<b style='font-size:115%'>{html.escape(peer.name)}</b> · room "
            f"<code>{html.escape(peer.room)}</code> · {html.escape(peer.state)}"
            + (f" · muted: {', '.join(muted)}" if muted else ""),
        )
        source = peer.video_source
        title = "<b>local</b>: " + (html.escape(source) if source else "no video")
        if peer.muted.get("video"):
            title += " (muted: remotes get black)"
        self._set(self.local_title, title)
        for remote, view in self.remotes.items():
            conn = peer.connections.get(remote)
            if conn is not None:
                self._set(view.info, connection_html(conn))
                frame = conn.latest_frame
                size = f" · {frame.width}×{frame.height}" if frame is not None else ""
                self._set(view.title, f"<b>from {html.escape(remote)}</b>{size}")
        if len(peer.chat_log) != self._chat_rendered:
            self._chat_rendered = len(peer.chat_log)
            self._set(self.chat_log, chat_html(peer, self.chat_lines))
        self._syncing = True
        try:
            self.mute_audio.value = bool(peer.muted.get("audio"))
            self.mute_audio.description = "Unmute audio" if self.mute_audio.value else "Mute audio"
            self.mute_video.value = bool(peer.muted.get("video"))
            self.mute_video.description = "Unmute video" if self.mute_video.value else "Mute video"
            if source is not None:
                self.video_source.value = source
            if self.live:
                self.video_source.disabled = source is None
                self.leave_button.disabled = peer.state != "joined"
                self.rejoin_button.disabled = peer.state not in ("new", "left")
        finally:
            self._syncing = False

    def _sync_remote_views(self) -> None:
        """One view per current connection, in the peer's order; closed ones are dropped."""
        current = list(self.peer.connections)
        if current == list(self.remotes):
            return
        for remote in [r for r in self.remotes if r not in self.peer.connections]:
            self.remotes.pop(remote).close()
        for remote in current:
            if remote not in self.remotes:
                self.remotes[remote] = _RemoteView(remote, self.max_width)
        self.remotes = {r: self.remotes[r] for r in current}
        self.previews.children = [self.local_box, *(v.box for v in self.remotes.values())]

    @staticmethod
    def _set(widget: Any, value: str) -> None:
        if widget.value != value:
            widget.value = value

    def text(self) -> str:
        """Everything the widget says, as plain text (for tests, logs and screen readers)."""
        parts = [self.header.value, self.local_title.value, self.status.value]
        for view in self.remotes.values():
            parts += [view.title.value, view.info.value]
        parts.append(self.chat_log.value)
        return strip_tags("\n".join(parts))

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop updating (cancel the widget's tasks, drop the listener) and close the views.

        In-flight control actions (a leave or rejoin) are left to finish: cancelling one
        halfway would leave the peer half-joined.
        """
        if getattr(self, "_closed", True):  # closed already, or __init__ never finished
            super().close()
            return
        self._closed = True
        self.peer.remove_listener(self._on_event)
        for task in (self._ticker, self._puller, self._encoding):
            if task is not None:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    task.cancel()
        if self._local_track is not None:
            self._local_track.stop()
            self._local_track = None
        for view in self.remotes.values():
            view.close()
        for w in self._own:
            w.close()
        super().close()

    async def aclose(self) -> None:
        """:meth:`close`, then wait until every task the widget started has ended."""
        self.close()
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _encode_all(jobs: list[tuple[JpegEncoder, av.VideoFrame, bool, Any]]) -> list[bytes]:
    """Encode every job (runs in a worker thread); a failing frame yields ``b""``."""
    results: list[bytes] = []
    for encoder, frame, blank, _ in jobs:
        try:
            results.append(encoder.encode(frame, blank=blank))
        except Exception:
            log.exception("preview encode failed")
            results.append(b"")
    return results


_widgets: weakref.WeakKeyDictionary[Peer, PeerWidget] = weakref.WeakKeyDictionary()


def peer_widget(peer: Peer, **options: Any) -> PeerWidget:
    """``peer``'s live :class:`PeerWidget` (``options`` go to it).

    One per peer: displaying the peer again shows the same widget, so re-running a cell
    adds no task. New options replace (and close) the previous widget.
    """
    current = _widgets.get(peer)
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if current is None or current.closed or options or (in_loop and not current.live):
        if current is not None:
            current.close()
        current = _widgets[peer] = PeerWidget(peer, **options)
    return current


def peer_mimebundle(peer: Peer, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
    """IPython's mimebundle formatter for :class:`~rtclab.peer.Peer`: the peer shows as
    its :func:`peer_widget`. Registered by ``import rtclab`` inside IPython, so the core
    peer module never imports a widget."""
    bundle: dict[str, Any] | None = peer_widget(peer)._repr_mimebundle_(
        include=include, exclude=exclude
    )
    return bundle
