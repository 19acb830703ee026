"""Shared fixtures: a real signaling server on loopback and peers that always get closed."""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rtclab.ice.coturn import Coturn
from rtclab.peer import Peer
from rtclab.signaling.server import SignalingServer
from rtclab.web import CHROMIUM_FLAGS


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


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A Dask ``LocalCluster`` of two worker processes, shared by a module's tests (its start
    and each worker's first import of rtclab are paid once) and gone after them."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


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


# --------------------------------------------------------------------------- real Chromium

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = list(CHROMIUM_FLAGS)
_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.fixture
def loopback_netns() -> Iterator[str]:
    """Run the test inside a fresh network namespace that has only ``lo`` (root only).

    Chromium gathers candidates on every interface, this machine's outside address
    included; in here there is nothing but 127.0.0.1. The test's own thread (the event loop:
    server, aiortc peers) enters the namespace with ``setns``, and every process it starts
    from then on (Playwright's driver, Chromium, JupyterLab and its kernel) inherits it.
    The namespace is left and deleted afterwards, whatever happened.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    if os.geteuid() != 0:
        pytest.skip("needs root for a loopback-only network namespace (ip netns)")
    name = f"rtclab-br-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield name
        finally:
            _setns(original)
    finally:
        os.close(original)
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
async def chromium(loopback_netns: str) -> AsyncIterator[Any]:
    """Headless Debian Chromium (never a downloaded one) inside :func:`loopback_netns`."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()
