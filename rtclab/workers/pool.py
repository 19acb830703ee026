"""The kernel's side of a lab's workers: start them, place peers, carry lines, notice deaths.

Local workers are child processes (``python -m rtclab.workers.worker``) on stdin/stdout;
workers on a Dask cluster are long-running tasks that dial back to a TCP listener of the
kernel and prove themselves with the lab's token. Both speak the same lines
(:mod:`rtclab.wire`, :mod:`.protocol`). A worker whose stream ends unasked is dead: an
``error`` event, its peers ``failed``, its pending calls raise :class:`ConnectionError`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import itertools
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from .._proc import die_with_parent
from ..stats.collector import StatsCollector
from ..wire import decode_line, encode_line
from .protocol import options_to_wire, raise_error
from .remote import RemotePeer
from .worker import LINE_LIMIT, run_worker

__all__ = ["WorkerLink", "WorkerPool"]

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # importing aiortc in a fresh process on a busy machine takes a while


@dataclass(eq=False, repr=False)
class WorkerLink:
    """One worker seen from the kernel: its line stream, its pending calls, its peers."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    collector: StatsCollector
    on_death: Callable[[WorkerLink, str], None]
    process: asyncio.subprocess.Process | None = None
    peers: dict[str, RemotePeer] = field(default_factory=dict, init=False)
    hostname: str | None = field(default=None, init=False)
    dead: str | None = field(default=None, init=False)  # why, once the stream ended unasked
    closing: bool = field(default=False, init=False)
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20), init=False)

    def __post_init__(self) -> None:
        self.pid: int | None = self.process.pid if self.process is not None else None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.ensure_future(self._read())
        stderr = self.process.stderr if self.process is not None else None
        self._stderr_task = (
            asyncio.ensure_future(self._read_stderr()) if stderr is not None else None
        )

    @property
    def alive(self) -> bool:
        return self.dead is None and not self.closing

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"dead ({self.dead})" if self.dead else "closing"
        return f"<WorkerLink {self.index} pid={self.pid} host={self.hostname} {state}>"

    async def ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the worker said hello (it has imported aiortc and runs its loop)."""
        hello = await asyncio.wait_for(asyncio.shield(self._hello), timeout)
        self.pid = int(hello.get("pid") or 0) or self.pid
        self.hostname = str(hello.get("host"))

    def request(self, message: dict[str, Any]) -> asyncio.Future[Any]:
        """Send a command now; the future gets the worker's reply (or its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.dead is not None or self.writer.is_closing():
            future.set_exception(ConnectionError(f"worker {self.index} is gone: {self.dead}"))
            return future
        call_id = next(self._ids)
        self._pending[call_id] = future
        self.writer.write(encode_line({**message, "id": call_id}))
        return future

    def forget(self, peer: RemotePeer) -> None:
        if self.peers.get(peer.name) is peer:
            del self.peers[peer.name]

    # -- in -------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while line := await self.reader.readline():
                message = decode_line(line)
                if message is not None:
                    self._dispatch(message)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("worker %s: stream broke: %s", self.index, exc)
        await self._ended()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "reply" in message:
            future = self._pending.pop(int(message["reply"]), None)
            if future is None or future.done():
                return
            if "error" in message:
                try:
                    raise_error(message["error"])
                except Exception as exc:
                    future.set_exception(exc)
            else:
                future.set_result(message.get("result"))
            return
        if "hello" in message and not self._hello.done():
            self._hello.set_result(dict(message["hello"]))
            return
        # everything else is about one of this worker's peers: never trust another name
        peer = self.peers.get(str(message.get("peer")))
        if peer is None:
            return
        if "rows" in message:
            self.collector.add_rows(message["rows"], peer=peer.name, own_mos=True)
        elif "frames" in message:
            frames = [f for f in message["frames"] if f.get("peer") == peer.name]
            self.collector.store.append_frames(frames)
        elif "event" in message:
            peer._emit(message.get("remote"), str(message["event"]), message.get("value"))
        elif "candidates" in message or "estimates" in message:
            table = "candidates" if "candidates" in message else "estimates"
            peer._table(table, list(message[table]))
        elif "preview" in message:
            with contextlib.suppress(ValueError):
                peer._preview(message.get("remote"), base64.b64decode(message["jpeg"]))

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())

    async def _ended(self) -> None:
        reason = f"worker {self.index} (pid {self.pid}) closed its stream"
        if self.process is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 2.0)
            code = self.process.returncode
            if code is not None and code < 0:
                reason = (
                    f"worker {self.index} (pid {self.pid}) killed by {signal.Signals(-code).name}"
                )
            elif code is not None:
                reason = f"worker {self.index} (pid {self.pid}) exited with code {code}"
            if self.stderr and not self.closing:
                reason += f": {self.stderr[-1]}"
        error = ConnectionError(reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if not self._hello.done():
            self._hello.set_exception(error)
        if not self.closing:
            self.dead = reason
            self.on_death(self, reason)

    # -- end ------------------------------------------------------------------------------

    async def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to close its peers and end; kill it if it does not."""
        was_alive, self.closing = self.alive, True  # the stream's end is no death now
        if was_alive:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.request({"op": "close"}), timeout)
        with contextlib.suppress(Exception):
            self.writer.close()
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 5.0)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._reader_task, 5.0)
        if self._stderr_task is not None:
            self._stderr_task.cancel()


@dataclass(eq=False)
class WorkerPool:
    """A lab's workers: ``count`` local processes, or one per worker of a Dask ``client``."""

    collector: StatsCollector
    _: KW_ONLY
    count: int = 0
    client: Any = None
    stats_interval: float = 1.0
    host: str = "127.0.0.1"
    token: str | None = None
    on_error: Callable[[str], None] | None = None
    links: list[WorkerLink] = field(default_factory=list, init=False)
    dial: str | None = field(default=None, init=False)  # the kernel's address for cluster workers

    def __post_init__(self) -> None:
        if self.client is None and self.count < 1:
            raise ValueError("workers must be >= 1, 'auto' or a dask.distributed Client")
        if self.client is not None and self.token is None:
            raise ValueError("workers on a cluster dial the kernel: they need the lab's token")
        self._turn = itertools.count()
        self._listener: asyncio.Server | None = None
        self._dialed: dict[int, asyncio.Future[WorkerLink]] = {}
        self._tasks: list[Any] = []  # the Dask futures of the long-running worker tasks

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (this machine's for local workers)."""
        return [link.pid for link in self.links if link.alive and link.pid]

    def _death(self, link: WorkerLink, reason: str) -> None:
        log.error("lab worker lost: %s", reason)
        self.collector.record_event(f"worker-{link.index}", None, "error", reason)
        if self.on_error is not None:
            self.on_error(reason)
        for peer in list(link.peers.values()):
            peer._worker_lost(reason)

    # -- start ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.client is not None:
            await self._start_cluster()
        else:
            await asyncio.gather(*(self._spawn(i) for i in range(self.count)))
        await asyncio.gather(*(link.ready() for link in self.links))

    async def _spawn(self, index: int) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rtclab.workers.worker",
            "--index", str(index), "--stats-interval", str(self.stats_interval),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),  # no orphan after a kill -9
        )  # fmt: skip
        assert process.stdout is not None and process.stdin is not None
        self.links.append(
            WorkerLink(index, process.stdout, process.stdin, self.collector, self._death, process)
        )
        self.links.sort(key=lambda link: link.index)

    async def _start_cluster(self) -> None:
        """One long-running task per Dask worker, each dialing back to this listener."""
        assert self.token is not None
        self._listener = await asyncio.start_server(self._accept, self.host, 0, limit=LINE_LIMIT)
        port = self._listener.sockets[0].getsockname()[1]
        info = await asyncio.to_thread(self.client.scheduler_info)
        addresses = sorted(info["workers"])
        if not addresses:
            raise RuntimeError("the Dask cluster has no workers")
        self.dial = dial = _dial_address(self.host, self.client.scheduler.address)
        loop = asyncio.get_running_loop()
        for slot, address in enumerate(addresses):
            self._dialed[slot] = loop.create_future()
            self._tasks.append(
                self.client.submit(
                    run_worker,
                    dial,
                    port,
                    self.token,
                    slot,
                    self.stats_interval,
                    workers=[address],
                    allow_other_workers=False,
                    pure=False,
                    key=f"rtclab-worker-{slot}-{os.getpid()}-{port}",
                )
            )
        links = await asyncio.wait_for(asyncio.gather(*self._dialed.values()), START_TIMEOUT)
        self.links = sorted(links, key=lambda link: link.index)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A dialing worker: its first line must carry the token and a slot we wait for."""
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(reader.readline(), 10.0)
            message = decode_line(line) or {}
            slot = message.get("slot")
            token = str(message.get("token", ""))
            assert self.token is not None
            future = self._dialed.get(slot) if isinstance(slot, int) else None
            if (
                isinstance(slot, int)
                and hmac.compare_digest(token, self.token)
                and future
                and not future.done()
            ):
                link = WorkerLink(slot, reader, writer, self.collector, self._death)
                link._hello.set_result(dict(message.get("hello", {})))
                future.set_result(link)
                return
        log.warning("refused a worker connection (bad token or unexpected slot)")
        writer.close()

    # -- peers ----------------------------------------------------------------------------

    def signaling_url(self, url: str) -> str:
        """The lab's signaling ``url`` as the workers reach it (a wildcard ``host`` is not
        an address to dial)."""
        if self.dial is None or self.dial == self.host:
            return url
        return url.replace(f"//{self.host}:", f"//{self.dial}:", 1)

    def place(self, worker: int | None = None) -> WorkerLink:
        """Worker ``worker``, or the live one with the fewest peers (ties: round robin)."""
        alive = [link for link in self.links if link.alive]
        if worker is not None:
            if not 0 <= worker < len(self.links):
                raise ValueError(f"worker must be in 0..{len(self.links) - 1}, not {worker}")
            link = self.links[worker]
            if not link.alive:
                raise ConnectionError(f"worker {worker} is gone: {link.dead}")
            return link
        if not alive:
            raise ConnectionError("every worker of this lab is gone")
        turn = next(self._turn)
        return min(alive, key=lambda w: (len(w.peers), (w.index - turn) % len(self.links)))

    async def peer(
        self,
        name: str,
        url: str,
        room: str,
        options: dict[str, Any],
        worker: int | str,
        join: bool,
        peers: dict[str, Any],
    ) -> RemotePeer:
        """``Lab.peer`` on a worker: made, registered in ``peers`` (the lab's), its events
        recorded, joined (or only created); nothing left behind if that fails."""
        if worker != "auto" and not isinstance(worker, int):
            raise ValueError(f"worker must be an index, 'auto' or 'kernel', not {worker!r}")
        index = None if worker == "auto" else int(worker)
        peer = self.new_peer(name, self.signaling_url(url), room, options, index)
        peer.add_listener(self.collector.record_event)
        peers[name] = peer
        try:
            await (peer.join() if join else peer.create())
        except BaseException:
            del peers[name]
            peer.link.forget(peer)
            raise
        return peer

    def new_peer(
        self, name: str, url: str, room: str, options: dict[str, Any], worker: int | None
    ) -> RemotePeer:
        link = self.place(worker)
        peer = RemotePeer(name, room, link, url, options_to_wire(options))
        link.peers[name] = peer
        return peer

    # -- stop -----------------------------------------------------------------------------

    async def stop(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links), return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
            self._listener = None
        if self._tasks:  # ended with their streams; cancel any that did not start
            with contextlib.suppress(Exception):
                cancelled = self.client.cancel(self._tasks)
                if asyncio.iscoroutine(cancelled):  # an asynchronous Client
                    await cancelled
        self._tasks.clear()


def _dial_address(host: str, scheduler: str) -> str:
    """The address a Dask worker dials for this kernel: ``host`` itself unless it is a
    wildcard; then the local address that routes to the scheduler (no packet is sent)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    target = scheduler.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in target else socket.AF_INET,
                       socket.SOCK_DGRAM) as probe:  # fmt: skip
        probe.connect((target, 9))
        return str(probe.getsockname()[0])
