"""A lab worker: peers in their own process and event loop, driven by the kernel over JSON lines.

``python -m rtclab.workers.worker`` speaks on stdin/stdout (a local worker,
started by :class:`~rtclab.workers.pool.WorkerPool`); :func:`run_worker` dials the kernel
over TCP instead (a worker on a Dask cluster). Either way the worker streams its peers'
events, stats rows and frames with the row protocol (:mod:`rtclab.wire`), JPEG previews
on request, and ends — closing its peers — when the kernel's stream ends. Linux kills a
local worker when its parent dies (``PR_SET_PDEATHSIG``, set by the pool), so a kernel
killed with SIGKILL leaves no orphan.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import av

from ..model import EventListener
from ..peer.peer import Peer
from ..stats.collector import StatsCollector
from ..widgets._preview import JpegEncoder
from ..wire import (
    decode_line,
    encode_line,
    event_message,
    frames_message,
    rows_message,
    table_message,
)
from .protocol import CALLS, MAX_PREVIEW_FPS, error_reply, frame_to_wire, options_from_wire

__all__ = ["WorkerHost", "run_worker", "serve"]

log = logging.getLogger(__name__)

LINE_LIMIT = 1 << 24  # a line carries a poll's rows or a JPEG: far above asyncio's 64 KiB
_BACKLOG = 1 << 22  # unsent bytes above which previews and frames wait (rows and events go)
_PREVIEW_WIDTH = 160
# a connection's events that leave its candidates as they were and may come every second
_NOT_ICE = frozenset({"freeze", "chat", "stats-timeout", "stats-error", "recording"})


class _ForwardingCollector(StatsCollector):
    """The worker's poller: its own events (``stats-timeout``, ``pair-changed``) go to the
    kernel instead of a store nobody reads."""

    def __init__(self, forward: EventListener, interval: float) -> None:
        super().__init__(interval, window=10.0, max_rows=20_000)
        self._forward = forward

    def record_event(self, peer: str, remote: str | None, event: str, value: Any = None) -> None:
        self._forward(peer, remote, event, value)


class WorkerHost:
    """The peers of one worker and what it streams to the kernel through ``writer``."""

    def __init__(self, writer: asyncio.StreamWriter, *, stats_interval: float) -> None:
        self.writer = writer
        self.peers: dict[str, Peer] = {}
        self.collector = _ForwardingCollector(self._event, stats_interval)
        self.collector.on_sample(self._on_rows)
        self._frames_taken: dict[str, int] = {}
        # candidates change only with a connection's ICE events (or a trickled candidate):
        # a peer's go again right after a burst of them (before a wait_connected reply),
        # never in a steady state
        self._ice_changed: set[str] = set()
        self._ice_flush: asyncio.Handle | None = None
        self._trickled: dict[str, int] = {}
        self._estimates_sent: dict[str, float] = {}  # peer -> time of the newest REMB sent
        self._previews: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- out --------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_line(message))

    @property
    def backlogged(self) -> bool:
        return self.writer.transport.get_write_buffer_size() > _BACKLOG

    def _on_rows(self, rows: list[dict[str, Any]]) -> None:
        by_peer: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_peer.setdefault(str(row["peer"]), []).append(row)
        for name, group in by_peer.items():
            self.send(rows_message(group, name))
        for name, peer in list(self.peers.items()):
            new = min(peer.frames_total - self._frames_taken.get(name, 0), len(peer.frame_rows))
            self._frames_taken[name] = peer.frames_total
            if new > 0 and self.backlogged:  # the kernel reads slower than frames come
                self.send(event_message(name, None, "frames-skipped", new))
            elif new > 0:
                self.send(frames_message(list(peer.frame_rows)[-new:], name))
            trickled = sum(c.trickled_candidates for c in list(peer.connections.values()))
            if trickled != self._trickled.get(name, 0):  # trickled candidates have no event
                self._trickled[name] = trickled
                self._ice_changed.add(name)
            if peer.estimator is not None:
                estimates = peer.estimate_records(after=self._estimates_sent.get(name, 0.0))
                if estimates:
                    self._estimates_sent[name] = max(float(r["t"]) for r in estimates)
                    self.send(table_message("estimates", estimates, name))
        self._send_candidates()

    def _send_candidates(self) -> None:
        self._ice_flush = None
        for name in list(self._ice_changed):
            self._ice_changed.discard(name)
            if (peer := self.peers.get(name)) is not None:
                self.send(table_message("candidates", peer.candidate_records(), name))

    def _event(self, peer: str, remote: str | None, event: str, value: Any = None) -> None:
        if remote is not None and event not in _NOT_ICE:
            self._ice_changed.add(peer)
            if self._ice_flush is None:
                self._ice_flush = asyncio.get_running_loop().call_soon(self._send_candidates)
        self.send(event_message(peer, remote, event, value))

    # -- in ---------------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> None:
        """Carry out one command; async steps run as tasks, so a slow ``wait_connected``
        holds nothing else up, and sync ones run now, in the order they came."""
        call_id = int(message.get("id", 0))
        try:
            op = message.get("op")
            if op == "create":
                self._create(message)
                if message.get("join"):
                    self._spawn(call_id, self._join_new(str(message["peer"])))
                else:
                    self.send({"reply": call_id, "result": None})
            elif op == "call":
                self._call(call_id, message)
            elif op == "preview":
                self._preview(str(message["peer"]), float(message.get("fps", 0.0)))
                self.send({"reply": call_id, "result": None})
            elif op == "frame":
                self._frame(call_id, message)
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:
            self.send(error_reply(call_id, exc))

    def _create(self, message: dict[str, Any]) -> None:
        name = str(message["peer"])
        if name in self.peers:
            raise ValueError(f"this worker already has a peer named {name!r}")
        options = options_from_wire(message.get("options", {}))
        peer = Peer(name, str(message["url"]), room=str(message["room"]), **options)
        peer.add_listener(self._event)
        self.peers[name] = peer
        self.collector.add(peer)

    async def _join_new(self, name: str) -> None:
        """Join a peer just made; if that fails it goes, so the kernel may try the name again."""
        peer = self.peers[name]
        try:
            await peer.join()
        except BaseException:
            self.peers.pop(name, None)
            self.collector.remove(peer)
            await peer.close()
            raise

    def _call(self, call_id: int, message: dict[str, Any]) -> None:
        method = str(message.get("method"))
        if method not in CALLS:
            raise ValueError(f"{method!r} is not a peer method a worker runs")
        peer = self.peers.get(str(message.get("peer")))
        if peer is None:
            raise LookupError(f"no peer {message.get('peer')!r} on this worker")
        result = getattr(peer, method)(*message.get("args", ()), **message.get("kwargs", {}))
        if asyncio.iscoroutine(result):
            self._spawn(call_id, result)
        else:
            self.send({"reply": call_id, "result": _jsonable(result)})

    def _spawn(self, call_id: int, coro: Any) -> None:
        async def run() -> None:
            try:
                result = await coro
            except Exception as exc:
                self.send(error_reply(call_id, exc))
            else:
                self.send({"reply": call_id, "result": _jsonable(result)})

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _frame(self, call_id: int, message: dict[str, Any]) -> None:
        """The newest frame a peer decoded from ``remote``, whole (copied in a thread)."""
        peer = self.peers.get(str(message.get("peer")))
        if peer is None:
            raise LookupError(f"no peer {message.get('peer')!r} on this worker")
        frame = peer.latest_frame(str(message.get("remote")))
        if frame is None:
            self.send({"reply": call_id, "result": None})
        else:
            self._spawn(call_id, asyncio.to_thread(frame_to_wire, frame))

    # -- previews ---------------------------------------------------------------------

    def _preview(self, name: str, fps: float) -> None:
        peer = self.peers[name]
        task = self._previews.pop(name, None)
        if task is not None:
            task.cancel()
        if fps > 0:
            period = 1.0 / min(fps, MAX_PREVIEW_FPS)
            self._previews[name] = asyncio.ensure_future(self._stream_previews(peer, period))

    async def _stream_previews(self, peer: Peer, period: float) -> None:
        """Small JPEGs of what ``peer`` sends and receives, at most one per image per
        ``period``, encoded in a thread; a frame already sent is not sent again."""
        encoders: dict[str | None, JpegEncoder] = {}
        shown: dict[str | None, int] = {}
        local: dict[str, av.VideoFrame] = {}
        track = peer.preview_track()

        async def pull() -> None:
            with contextlib.suppress(Exception):
                while track is not None:
                    frame = await track.recv()
                    if isinstance(frame, av.VideoFrame):
                        local["frame"] = frame

        puller = asyncio.ensure_future(pull())
        try:
            while True:
                await asyncio.sleep(period)
                if self.backlogged:
                    continue
                frames: dict[str | None, Any] = {None: local.get("frame")}
                frames.update({r: c.latest_frame for r, c in list(peer.connections.items())})
                jobs = [
                    (k, f) for k, f in frames.items() if f is not None and shown.get(k) != id(f)
                ]
                for key, frame in jobs:
                    shown[key] = id(frame)
                    encoder = encoders.setdefault(key, JpegEncoder(max_width=_PREVIEW_WIDTH))
                    blank = key is None and bool(peer.muted.get("video"))
                    data = await asyncio.to_thread(encoder.encode, frame, blank=blank)
                    self.send({"preview": True, "peer": peer.name, "remote": key,
                               "jpeg": base64.b64encode(data).decode()})  # fmt: skip
        finally:
            puller.cancel()
            if track is not None:
                track.stop()

    # -- end --------------------------------------------------------------------------

    async def close(self) -> None:
        if self._ice_flush is not None:
            self._ice_flush.cancel()
        for task in self._previews.values():
            task.cancel()
        await asyncio.gather(*(p.close() for p in self.peers.values()), return_exceptions=True)
        await self.collector.stop()
        for task in list(self._tasks):
            task.cancel()


def _jsonable(result: Any) -> Any:
    """A peer method's result as JSON: connections by remote name, paths as text."""
    if isinstance(result, Peer) or result is None:
        return None
    if isinstance(result, Path):
        return str(result)
    if isinstance(result, list):
        return [getattr(r, "remote", r) for r in result]
    return result


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    index: int,
    stats_interval: float = 1.0,
    first: dict[str, Any] | None = None,
) -> None:
    """Run the worker on one stream until the kernel says ``close`` or goes away."""
    host = WorkerHost(writer, stats_interval=stats_interval)
    hello = {"pid": os.getpid(), "index": index, "host": socket.gethostname()}
    host.send({**(first or {}), "hello": hello})
    await host.collector.start()
    try:
        while line := await reader.readline():
            message = decode_line(line)
            if message is None:
                continue
            if message.get("op") == "close":
                await host.close()
                host.send({"reply": int(message.get("id", 0)), "result": None})
                break
            host.handle(message)
            if writer.transport.get_write_buffer_size() > _BACKLOG:
                await writer.drain()
    finally:
        await host.close()
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()


async def _pipe_main(index: int, stats_interval: float) -> None:
    loop = asyncio.get_running_loop()
    # the protocol gets its own copy of stdout; a stray print goes to stderr instead
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), out
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    await serve(reader, writer, index=index, stats_interval=stats_interval)


async def _tcp_main(host: str, port: int, token: str, slot: int, stats_interval: float) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
    await serve(reader, writer, index=slot, stats_interval=stats_interval,
                first={"token": token, "slot": slot})  # fmt: skip


def run_worker(host: str, port: int, token: str, slot: int, stats_interval: float = 1.0) -> str:
    """A worker that dials the kernel at ``host:port`` (what a Dask task runs); returns
    when the kernel closes it or goes away."""
    asyncio.run(_tcp_main(host, port, token, slot, stats_interval))
    return f"rtclab worker {slot} on {socket.gethostname()} done"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtclab.workers.worker")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--stats-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_pipe_main(args.index, args.stats_interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
