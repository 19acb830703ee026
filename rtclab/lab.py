"""Lab: the one object a notebook holds — signaling server, peers and stats in the running loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd

from .ice.config import IceConfig
from .peer.peer import Peer
from .signaling.server import SignalingServer
from .stats.collector import StatsCollector
from .stats.summary import pair_summary


class Lab:
    """Starts an in-kernel signaling server and a stats collector; makes peers that report to it.

    Everything runs in the caller's event loop (a Jupyter kernel's included): ``await
    lab.start()`` returns at once, ``await lab.stop()`` closes every peer, the collector
    and the server, freeing the port. ``Lab`` is also an async context manager.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stats_interval: float = 1.0,
        stats_window: float | None = 600.0,
        ice: IceConfig | None = None,
    ) -> None:
        self.server = SignalingServer(host=host, port=port)
        self.collector = StatsCollector(interval=stats_interval, window=stats_window)
        self.ice = ice or IceConfig()
        self.peers: dict[str, Peer] = {}
        self.url: str | None = None

    async def start(self) -> Lab:
        if self.url is None:
            self.url = await self.server.start()
            await self.collector.start()
        return self

    async def peer(
        self,
        name: str,
        room: str = "lab",
        *,
        join: bool = True,
        ice: IceConfig | None = None,
        **options: Any,
    ) -> Peer:
        """Create a peer (see :class:`~rtclab.peer.Peer` for media options) and join ``room``."""
        if self.url is None:
            raise RuntimeError("call `await lab.start()` first")
        if name in self.peers:
            raise ValueError(f"a peer named {name!r} already exists in this lab")
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
    def samples(self) -> pd.DataFrame:
        return self.collector.samples

    @property
    def events(self) -> pd.DataFrame:
        return self.collector.events

    def summary(self) -> pd.DataFrame:
        """One row per peer -> remote: connect time, path, RTT, loss, jitter, bitrate, fps."""
        return pair_summary(self.samples, self.events)

    def to_csv(self, directory: str | Path) -> dict[str, Path]:
        return self.collector.to_csv(directory)

    async def stop(self) -> None:
        await asyncio.gather(*(p.close() for p in self.peers.values()), return_exceptions=True)
        for peer in self.peers.values():
            self.collector.remove(peer)
        self.peers.clear()
        await self.collector.stop()
        await self.server.stop()
        self.url = None

    async def __aenter__(self) -> Lab:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
