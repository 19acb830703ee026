"""Lab: the one object a notebook holds — signaling server, peers and stats in the running loop."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from ._compat import warn_missing_hooks
from .ice.config import IceConfig
from .net.events import NetworkEvent, NetworkSchedule
from .peer.peer import Peer
from .signaling.message_log import MessageLog
from .signaling.server import SignalingServer
from .stats.collector import StatsCollector
from .stats.recovery import recovery_times
from .stats.store import RunFrames
from .stats.summary import pair_summary

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .ice.coturn import Coturn
    from .widgets.dashboard import Dashboard
    from .widgets.estimate_view import EstimateView
    from .widgets.link_control import LinkControl
    from .workers.pool import WorkerPool
    from .workers.remote import RemotePeer

log = logging.getLogger(__name__)


def _preload_widgets() -> None:
    """Import the widget stack and build one throwaway figure, at start, before any peer
    of this lab runs.

    A dashboard opened mid-experiment otherwise froze every running peer's media for 3-4 s
    of imports plus ~0.3 s of plotly's first figure (see
    :func:`rtclab.widgets.dashboard.warm_up`). Importing in a thread does not help: the
    imports hold the GIL, and the emulated network's timers slipped (168 ms RTT measured
    for a 100 ms link). Later calls cost nothing.
    """
    from .widgets import peer_widget  # noqa: F401  (ipywidgets, anywidget)
    from .widgets.dashboard import warm_up

    warm_up()


def _in_kernel() -> bool:
    return "ipykernel" in sys.modules


class Lab(RunFrames):
    """Starts an in-kernel signaling server and a stats collector; makes peers that report to it.

    Everything runs in the caller's event loop (a Jupyter kernel's included): ``await
    lab.start()`` returns at once, ``await lab.stop()`` closes every peer, the collector
    and the server, freeing the port. ``Lab`` is also an async context manager.

    Re-running a notebook cell that makes a new ``Lab`` with the same ``name`` first stops
    the previous one, so ports, tasks and peers never pile up.

    With ``client=True`` (default) the server also serves the browser client
    (:mod:`rtclab.web`, see :meth:`browser_url`), and browsers' ``stats`` reports land in
    :attr:`samples` beside the kernel peers' rows (``peer`` = the browser's userId).

    Nothing measured is dropped: ``stats_window`` (seconds) bounds the rows kept in memory
    and the live views; older rows spill to ``samples.csv`` (and ``samples.events.csv``) in
    ``spill_dir``, and :attr:`samples`, :attr:`events`, :meth:`to_csv` and :meth:`to_parquet`
    return the whole run. Without ``spill_dir`` the lab uses a temporary folder of its own,
    removed when the lab is garbage-collected or the process exits; a ``spill_dir`` you pass
    is kept (:attr:`spill_dir` says where the files are).

    ``qoe=True`` (default): peers tag their test pattern and read received frames' tags into
    :attr:`frames` and the samples' QoE columns (docs/qoe.md); ``qoe=False`` turns it off.

    ``preload_widgets`` (default: when running in a Jupyter kernel) imports the plotly and
    widget stack in :meth:`start`, before any peer runs, so that opening a dashboard later
    does not freeze running media for the 3-4 s those imports take.

    ``workers`` puts peers in worker processes, each with its own event loop and aiortc, so
    a lab uses every core: ``N``, ``"auto"`` (one per core) or a ``dask.distributed``
    ``Client`` (one per Dask worker, perhaps on other machines). :meth:`peer` then returns a
    :class:`~rtclab.workers.RemotePeer` on the least-loaded worker (``worker=i`` pins one,
    ``worker="kernel"`` keeps a peer here); its rows, frames and events land beside local
    ones. The server, collector, dashboard and widgets stay in the kernel. Cluster workers
    must reach the server: ``host`` is where it listens (say ``"0.0.0.0"`` to open it to
    the network, an explicit choice), and ``token`` (a string, ``True`` for a random one,
    ``False`` for none; default: one with a Dask client) is then required to join.
    """

    _running: ClassVar[weakref.WeakValueDictionary[str, Lab]] = weakref.WeakValueDictionary()

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stats_interval: float = 1.0,
        stats_window: float | None = 600.0,
        ice: IceConfig | None = None,
        name: str = "default",
        keep_messages: int = 5_000,
        client: bool = True,
        preload_widgets: bool | None = None,
        spill_dir: str | Path | None = None,
        qoe: bool = True,
        workers: int | str | Any = None,
        token: str | bool | None = None,
    ) -> None:
        self.name = name
        self.errors: list[str] = []
        self.qoe = qoe  # the default of its peers' ``qoe`` (tagged frames, lab.frames)
        self.preload_widgets = _in_kernel() if preload_widgets is None else preload_widgets
        if token is None:
            token = workers is not None and not isinstance(workers, (int, str))
        self.token: str | None = (
            token if isinstance(token, str) else secrets.token_urlsafe(24) if token else None
        )
        self.server = SignalingServer(host=host, port=port, token=self.token)
        self._messages = MessageLog(keep_messages)
        if spill_dir is None:
            # created on the first spill (a short lab never touches the disk), removed with
            # the lab or at exit
            spill_dir = Path(tempfile.gettempdir()) / f"rtclab-{os.getpid()}-{secrets.token_hex(4)}"
            weakref.finalize(self, shutil.rmtree, spill_dir, True)
        self.spill_dir = Path(spill_dir)
        self.collector = StatsCollector(
            interval=stats_interval, window=stats_window, spill_path=self.spill_dir / "samples.csv"
        )
        self.ice = ice or IceConfig()
        self.peers: dict[str, Peer | RemotePeer] = {}
        self.workers: WorkerPool | None = None
        if workers is not None and workers != 0:
            from .workers.pool import WorkerPool

            count = (os.cpu_count() or 1) if workers == "auto" else workers
            self.workers = WorkerPool(
                self.collector, stats_interval=stats_interval, host=host, token=self.token,
                on_error=self.errors.append,
                **({"count": count} if isinstance(count, int) else {"client": workers}),
            )  # fmt: skip
        self.url: str | None = None
        self.coturn: Coturn | None = None
        self.turn_token: str | None = None
        self.browser_peers: list[Any] = []
        self._queue: asyncio.Task[Any] | None = None
        if client:
            from .web import serve_client

            serve_client(self.server)

    async def start(self) -> Lab:
        """Start the server and the collector in the running loop; returns the lab."""
        if self.url is not None:
            return self
        previous = Lab._running.get(self.name)
        if previous is not None and previous is not self and previous.url is not None:
            message = (
                f"stopped the running Lab {self.name!r} at {previous.url} (and its peers) to "
                f"start this one; to run several labs at once give each its own "
                f"name, e.g. Lab(name='second')"
            )
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            await previous.stop()
        warn_missing_hooks()  # aiortc/aioice outside the tested range: say what degrades
        if self.preload_widgets:
            _preload_widgets()
        url = await self.server.start()
        self.url = url if self.token is None else f"{url}?token={self.token}"
        self.server.add_listener(self._messages)
        self._unhook_events: Callable[[], None] | None = self.server.add_event_listener(
            self.collector.record_event
        )
        self._unhook_stats: Callable[[], None] | None = self.server.add_stats_listener(
            self._on_browser_stats
        )
        await self.collector.start()
        if self.workers is not None:
            try:
                await self.workers.start()
            except BaseException:
                await self.stop()
                raise
        Lab._running[self.name] = self
        self._guardian: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._stop_when_loop_ends(), name=f"rtclab-lab-{self.name}-guardian"
        )
        return self

    async def _stop_when_loop_ends(self) -> None:
        """Wait forever; when cancelled, stop the lab before the loop closes.

        A script that returns (or is interrupted with Ctrl-C) without ``await lab.stop()``
        ends in ``asyncio.run``, which cancels every task and waits for them: this one then
        closes the peers, the collector and the server, so no connection is left half-closed
        ("Task was destroyed but it is pending!") when the loop goes away.
        """
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            if self.url is not None:
                await self.stop()
            raise

    def _on_browser_stats(self, user: str, room: str, rows: tuple[dict[str, Any], ...]) -> None:
        self.collector.add_rows(rows, peer=user)

    def browser_url(
        self, room: str = "lab", user: str = "browser", **params: str | int | None
    ) -> str:
        """The served browser client's address for ``room`` as ``user``: open it in a browser
        (or several tabs, one ``user`` each) to join the lab's peers. ``params`` add query
        options (see ``rtclab/web/client.js``); with :meth:`turn` running, the TURN bearer
        token is passed as ``turnToken`` so the page fetches relay credentials, and the page
        uses the UDP and TCP TURN URLs only (``turn=udp,tcp``): browsers do not trust the
        throwaway CA coturn's ``turns:`` certificate comes from, and Chromium reports that
        server as an ICE candidate error."""
        if self.url is None:
            raise RuntimeError("call `await lab.start()` first")
        from .web import client_url

        if self.turn_token is not None:
            params.setdefault("turnToken", self.turn_token)
            params.setdefault("turn", "udp,tcp")
        if self.token is not None:
            params.setdefault("token", self.token)
        return client_url(self.server.host, self.server.port, room, user, **params)

    def browser_peer(self, room: str = "lab", user: str = "notebook", **options: Any) -> Any:
        """This notebook's own browser tab as a peer in ``room`` (a
        :class:`~rtclab.widgets.BrowserPeer`; display it). Signaling rides the widget comm,
        so it works where only the Jupyter port is reachable (Binder).

        With :meth:`turn` running, the tab gets this coturn's UDP and TCP TURN URLs with
        credentials minted for ``user`` (``ice_servers``; pass ``ice_servers=[]`` for none,
        ``ice_transport_policy="relay"`` for relay only). ``turns:`` is left out: browsers
        do not trust the throwaway CA coturn's certificate comes from."""
        from .widgets.browser_peer import BrowserPeer

        if self.url is None:
            raise RuntimeError("call `await lab.start()` first")
        if "ice_servers" not in options:
            options["ice_servers"] = self.browser_ice_servers(user)
        widget = BrowserPeer(self.url, room=room, user=user, **options)
        self.browser_peers.append(widget)
        return widget

    @property
    def messages(self) -> pd.DataFrame:
        """The signaling messages the server saw (in from clients, out to clients), oldest first."""
        return self._messages.frame()

    async def peer(
        self,
        name: str,
        room: str = "lab",
        *,
        join: bool = True,
        ice: IceConfig | None = None,
        worker: int | str = "auto",
        **options: Any,
    ) -> Peer | RemotePeer:
        """Create a peer (see :class:`~rtclab.peer.Peer` for media options) and join ``room``.

        With ``workers``, the peer runs on worker ``worker`` (``"auto"``: the least loaded;
        ``"kernel"``: here, as without workers) and this returns its
        :class:`~rtclab.workers.RemotePeer`."""
        if self.url is None:
            raise RuntimeError("call `await lab.start()` first")
        if name in self.peers:
            raise ValueError(f"a peer named {name!r} already exists in this lab")
        options.setdefault("qoe", self.qoe)
        if self.workers is not None and worker != "kernel":
            options["ice"] = ice or self.ice
            return await self.workers.peer(name, self.url, room, options, worker, join, self.peers)
        peer = Peer(name, self.url, room=room, ice=ice or self.ice, **options)
        peer.add_listener(self.collector.record_event)
        self.collector.add(peer)
        self.peers[name] = peer
        if join:
            try:
                await peer.join()
            except BaseException:
                self.collector.remove(peer)
                del self.peers[name]
                raise
        return peer

    # --- without await: the same steps, queued on the running loop -------------------------

    @staticmethod
    def _loop_for(call: str, instead: str) -> asyncio.AbstractEventLoop:
        """The running loop, or an error that names the awaitable call to use instead."""
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{call} needs a running event loop (a Jupyter kernel has one); in a script, "
                f"use `{instead}` inside an `async def main()` run by asyncio.run(main())"
            ) from None

    def _soon(self, what: str, step: Callable[[], Any], *, instead: str) -> asyncio.Task[Any]:
        """Run ``step()`` (a coroutine function) after every step queued before it.

        For cells written without ``await``: the cell returns at once, the step runs in the
        kernel's loop, and a failure is logged, kept in :attr:`errors` and recorded as an
        ``error`` event instead of vanishing in an un-awaited task. Never blocks the loop.
        """
        loop = self._loop_for(f"lab.{what}", instead)
        previous = self._queue

        async def run() -> Any:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            return await step()

        task = loop.create_task(run(), name=f"rtclab-lab-{what}")
        self._queue = task

        def report(done: asyncio.Task[Any]) -> None:
            if done.cancelled() or done.exception() is None:
                return
            exc = done.exception()
            message = f"{what} failed: {type(exc).__name__}: {exc}"
            log.error("lab %r: %s", self.name, message)
            self.errors.append(message)
            self.collector.record_event("lab", None, "error", message)

        task.add_done_callback(report)
        return task

    def launch(self) -> Lab:
        """``start()`` without ``await``: returns the lab at once, starting in the background."""
        self._soon("launch()", self.start, instead="await lab.start()")
        return self

    def add_peer(self, name: str, room: str = "lab", **options: Any) -> Peer:
        """``peer()`` without ``await``: the :class:`Peer` now (it displays as a widget that
        follows its state), joined in the background after the steps queued before. The
        peer runs in the kernel, with ``workers`` too (``await lab.peer(...)`` places one
        on a worker)."""
        instead = f"await lab.peer({name!r}, room={room!r})"
        self._loop_for(f"lab.add_peer({name!r})", instead)
        if name in self.peers:
            raise ValueError(f"a peer named {name!r} already exists in this lab")
        ice = options.pop("ice", None) or self.ice
        options.setdefault("qoe", self.qoe)
        peer = Peer(name, self.url or "", room=room, ice=ice, **options)
        peer.add_listener(self.collector.record_event)
        self.collector.add(peer)
        self.peers[name] = peer

        async def join() -> Peer:
            try:
                if self.url is None:
                    raise RuntimeError(f"the lab is not started, so {name!r} cannot join")
                peer.signaling_url = self.url
                await peer.join()
            except BaseException:
                # nothing half-made: a retry with the same name must work
                if self.peers.get(name) is peer:
                    self.collector.remove(peer)
                    del self.peers[name]
                raise
            return peer

        self._soon(f"add_peer({name!r})", join, instead=instead)
        return peer

    def stop_soon(self) -> None:
        """``stop()`` without ``await``, after the steps queued before it."""
        self._soon("stop_soon()", self.stop, instead="await lab.stop()")

    async def settled(self) -> None:
        """Wait for every step queued without ``await`` (``launch``, ``add_peer``, ...)."""
        while self._queue is not None and not self._queue.done():
            await asyncio.wait([self._queue])

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until every peer is connected to every other peer in its room."""
        rooms: dict[str, int] = {}
        for peer in self.peers.values():
            if peer.state == "joined":
                rooms[peer.room] = rooms.get(peer.room, 0) + 1
        await asyncio.gather(
            *(
                p.wait_connected(count=rooms[p.room] - 1, timeout=timeout)
                for p in self.peers.values()
                if p.state == "joined"
            )
        )

    @property
    def frames_source(self) -> StatsCollector:
        return self.collector

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.url else "stopped"
        return f"<Lab {self.name!r} {state}, peers={list(self.peers)}>"

    def summary(self) -> pd.DataFrame:
        """One row per peer -> remote: connect time, path, RTT, loss, jitter, bitrate, fps."""
        return pair_summary(self.samples, self.events)

    def network_events(
        self, network: Any, events: Iterable[NetworkEvent | Iterable[NetworkEvent]]
    ) -> NetworkSchedule:
        """Run network events (:mod:`rtclab.net.events`: link down/up, a new link, NAT
        reboot, address change) on ``network`` from now; each lands in :attr:`events`."""
        return NetworkSchedule(network, events, self.collector.record_event).start()

    def link_control(self, host: Any) -> LinkControl:
        """Sliders that change ``host``'s link live, each change an event in :attr:`events`."""
        from .widgets.link_control import LinkControl

        return LinkControl(host, self)

    def recovery(self) -> pd.DataFrame:
        """Per network disruption and connection: how long the peers took to notice it
        (``notice_s``) and to recover once the network was back (``recover_s``)."""
        return recovery_times(self.events)

    def estimate_figure(self, *, live: bool = False, **options: Any) -> go.Figure | EstimateView:
        """Capacity, estimate, target and send rate per video flow, over the queue delay
        (:func:`~rtclab.stats.figures.estimate_figure`: ``sender=``, ``receiver=``);
        ``live=True``: an :class:`~rtclab.widgets.EstimateView` (plus ``window_s=``)."""
        if live:
            from .widgets.estimate_view import EstimateView

            return EstimateView(self.collector, **options)
        from .stats.figures import estimate_figure

        return estimate_figure(self.samples, **options)

    def dashboard(self, **options: Any) -> Dashboard:
        """A live plotly dashboard of this lab's stats (see :class:`~rtclab.widgets.Dashboard`).

        Re-running the cell closes the dashboard the previous call made, so hidden ones never
        keep updating; build ``Dashboard(lab.collector)`` directly to keep several.
        """
        from .widgets.dashboard import Dashboard

        previous: Dashboard | None = getattr(self, "_dashboard", None)
        if previous is not None:
            previous.close()
        self._dashboard: Dashboard | None = Dashboard(self.collector, **options)
        return self._dashboard

    def to_csv(self, directory: str | Path) -> dict[str, Path]:
        """``samples.csv``, ``events.csv``, ``frames.csv`` of the run (``collector.to_csv``)."""
        return self.collector.to_csv(directory)

    def to_parquet(self, directory: str | Path) -> dict[str, Path]:
        """``samples``, ``events`` and ``frames`` ``.parquet`` of the whole run; needs pyarrow."""
        return self.collector.to_parquet(directory)

    # --- TURN and ICE paths (issue 4) ---------------------------------------------------------

    async def turn(self, *, token: str | None = None, **options: Any) -> Coturn:
        """Start a real coturn on loopback for this lab (see :class:`~rtclab.ice.coturn.Coturn`
        for ``options``) and return it; :meth:`stop` stops it.

        Its log lines go into the events frame (peer ``"coturn"``, event ``coturn-log``,
        secret redacted), and the signaling server answers ``GET /api/turn-credentials``
        for requests bearing ``Authorization: Bearer <lab.turn_token>`` (401 otherwise).
        Peers use it through ``ice=turn.ice_config(...)``.
        """
        from .ice.coturn import Coturn
        from .ice.credentials import TURN_CREDENTIALS_PATH, make_credentials_handler

        if self.url is None:
            raise RuntimeError("call `await lab.start()` first")
        if self.coturn is not None and self.coturn.running:
            raise RuntimeError("this lab already runs coturn (lab.coturn); stop it first")

        def on_log(line: str) -> None:
            self.collector.record_event("coturn", None, "coturn-log", line)

        coturn = Coturn(on_log=on_log, **options)
        await coturn.start()
        self.coturn = coturn
        self.turn_token = token or secrets.token_urlsafe(24)
        self.server.add_route(
            TURN_CREDENTIALS_PATH,
            make_credentials_handler(coturn.secret, coturn.urls, self.turn_token),
        )
        return coturn

    def browser_ice_servers(self, user: str = "browser") -> list[dict[str, Any]]:
        """``RTCIceServer`` dicts for a browser: this lab's coturn over UDP and TCP with
        credentials for ``user`` (what ``/api/turn-credentials`` serves), or ``[]`` when
        :meth:`turn` is not running. No ``turns:`` URL: browsers do not trust coturn's CA."""
        if self.coturn is None or not self.coturn.running:
            return []
        creds = self.coturn.credentials(
            user.replace(":", "_") or "browser", transports=("udp", "tcp")
        )
        return [creds.ice_server().to_dict()]

    @property
    def turn_credentials_url(self) -> str | None:
        """``http://…/api/turn-credentials`` when :meth:`turn` runs, else ``None``."""
        from .ice.credentials import TURN_CREDENTIALS_PATH

        if self.url is None or self.coturn is None:
            return None
        return f"http://{self.server.host}:{self.server.port}{TURN_CREDENTIALS_PATH}"

    @property
    def candidates(self) -> pd.DataFrame:
        """Every local and remote ICE candidate of every peer's live connections."""
        from .ice.inspect import candidates_frame

        rows: list[dict[str, Any]] = []
        for peer in self.peers.values():  # a worker's peer: as its worker last sent them
            records = peer.candidates().to_dict("records")
            rows += [{str(k): v for k, v in r.items()} for r in records]
        return candidates_frame(rows)

    def selected_pairs(self, changes_only: bool = True) -> pd.DataFrame:
        """The selected candidate pair over time (from the samples; changes only by default)."""
        from .ice.inspect import selected_pairs_frame

        return selected_pairs_frame(self.samples, changes_only=changes_only)

    async def stop(self) -> None:
        """Close every peer, coturn, browser peers, the collector and the server (frees port)."""
        guardian: asyncio.Task[None] | None = getattr(self, "_guardian", None)
        self._guardian = None
        if guardian is not None and guardian is not asyncio.current_task():
            guardian.cancel()
        await asyncio.gather(*(p.close() for p in self.peers.values()), return_exceptions=True)
        for peer in self.peers.values():
            self.collector.remove(peer)
        self.peers.clear()
        if self.coturn is not None:
            from .ice.credentials import TURN_CREDENTIALS_PATH

            self.server.remove_route(TURN_CREDENTIALS_PATH)
            await self.coturn.stop()
            self.coturn = None
        for widget in self.browser_peers:
            await widget.aclose()
        self.browser_peers.clear()
        if self.workers is not None:
            await self.workers.stop()
        await self.collector.stop()
        self.server.remove_listener(self._messages)
        unhook_stats = getattr(self, "_unhook_stats", None)
        if unhook_stats is not None:
            unhook_stats()
            self._unhook_stats = None
        unhook = getattr(self, "_unhook_events", None)
        if unhook is not None:
            unhook()
            self._unhook_events = None
        await self.server.stop()
        self.url = None
        if Lab._running.get(self.name) is self:
            del Lab._running[self.name]

    async def __aenter__(self) -> Lab:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
