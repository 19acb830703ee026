"""Shared fixtures: a real signaling server on loopback and peers that always get closed."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rtclab.ice.coturn import Coturn
from rtclab.peer import Peer
from rtclab.signaling.server import SignalingServer


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    srv = SignalingServer(host="127.0.0.1", port=0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def make_peer(server: SignalingServer) -> AsyncIterator[Callable[..., Awaitable[Peer]]]:
    peers: list[Peer] = []

    async def factory(name: str, *, join: bool = True, **options: Any) -> Peer:
        options.setdefault("room", "test")
        peer = Peer(name, server.url, **options)
        peers.append(peer)
        if join:
            await peer.join()
        return peer

    try:
        yield factory
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


@pytest.fixture
async def coturn() -> AsyncIterator[Coturn]:
    """A real coturn on free loopback ports (UDP, TCP, TLS with a generated CA), always
    stopped; skipped when the Debian package ``coturn`` is not installed."""
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn; scripts/setup.sh --test)")
    turn = Coturn()
    await turn.start()
    try:
        yield turn
    finally:
        await turn.stop()
