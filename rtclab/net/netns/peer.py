"""A peer process inside a host namespace, seen from the lab: the JSON lines it prints
(events, getStats rows) applied to the lab's collector as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypedDict

from ...wire import decode_line
from ..link import link_columns
from .host import NetnsHost

__all__ = ["NetnsPeer", "PeerMedia", "media_args"]


class PeerMedia(TypedDict, total=False):
    """What a namespace peer sends: :class:`~rtclab.Peer`'s keywords of the same names."""

    video: bool
    audio: bool
    data: bool
    width: int
    height: int
    fps: float


def media_args(media: PeerMedia) -> list[str]:
    """``rtclab peer`` options for ``media``; a key left out keeps the command's default
    (video and data on, 320x240 at 15 fps) except ``audio``: off unless asked for. A key
    that is not one of :class:`PeerMedia`'s is a TypeError, as a misspelt keyword is."""
    unknown = sorted(set(media) - PeerMedia.__optional_keys__)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    size = {"width": media.get("width"), "height": media.get("height"), "fps": media.get("fps")}
    args = [f"--{key}={value}" for key, value in size.items() if value is not None]
    sends = {"video": True, "audio": False, "data": True}
    return args + [f"--no-{kind}" for kind, on in sends.items() if not media.get(kind, on)]


class NetnsPeer:
    """A peer process inside a namespace, seen from the lab: its events, its stats rows,
    whether it connected. Lines it prints are applied as they arrive (never blocking)."""

    def __init__(
        self, name: str, host: NetnsHost, process: asyncio.subprocess.Process, collector: Any
    ) -> None:
        self.name = name
        self.host = host
        self.process = process
        self.collector = collector
        self.events: list[dict[str, Any]] = []
        self.rows = 0
        self.connected: set[str] = set()
        self.failures: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    def __repr__(self) -> str:
        state = "running" if self.process.returncode is None else "exited"
        return f"<NetnsPeer {self.name} in {self.host.namespace} ({self.host.preset}) {state}>"

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = decode_line(line)
            if message is None:
                continue
            if "rows" in message:
                if self.collector is not None:
                    rows = self._with_link(message["rows"])
                    self.rows += len(self.collector.add_rows(rows, peer=self.name))
            elif "event" in message:
                self._on_event(message)
            self._changed.set()
        self._changed.set()

    def _with_link(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The host's NFQUEUE link now, on each row (its uplink on outbound rows)."""
        impairment = self.host.impairment
        status = impairment.status() if impairment is not None else None
        if not status:
            return rows
        return [dict(row, **link_columns(status, str(row.get("direction")))) for row in rows]

    def _on_event(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        remote, event, value = message.get("remote"), message["event"], message.get("value")
        if event == "connected" and remote:
            self.connected.add(remote)
        elif event == "failed" and remote:
            self.failures[remote] = str(value)
        if self.collector is not None:
            self.collector.record_event(self.name, remote, event, value)

    async def wait_connected(self, count: int = 1, timeout: float = 15.0) -> None:
        """Until ``count`` remotes are connected; :class:`ConnectionError` names a failure
        (or the process's last words if it exited)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.connected) < count:
            if self.failures:
                remote, reason = next(iter(self.failures.items()))
                raise ConnectionError(f"{self.name} -> {remote} failed: {reason}")
            if self._reader.done():
                err = b""
                if self.process.stderr is not None:
                    err = await self.process.stderr.read()
                raise ConnectionError(f"{self.name} exited: {err.decode()[-800:]}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: {len(self.connected)} of {count} connected")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def close(self) -> None:
        """Leave (SIGTERM: the peer says goodbye to the room) and wait for the process."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except asyncio.TimeoutError:
                self._kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5)
