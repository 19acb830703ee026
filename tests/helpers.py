"""Helpers shared by several test files (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import inspect
import json
import struct
import sys
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# ----------------------------------------------------------------------------- waiting


async def until(
    check: Callable[[], Any], timeout: float = 10.0, what: str = "", interval: float = 0.05
) -> Any:
    """Poll ``check`` (sync, or returning an awaitable) until it gives something truthy;
    return that, or fail naming ``what`` and the last value after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what or check}: not within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


# ----------------------------------------------------------------------------- frames


def masked_frame(payload: bytes, opcode: int = 1, fin: bool = True, mask: bytes = b"m4sk") -> bytes:
    """A WebSocket frame as a client sends it (RFC 6455: masked), for feeding the server's
    frame splitter bytes it would read off a socket."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0xFE, n)
    else:
        head = struct.pack("!BBQ", b0, 0xFF, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# ----------------------------------------------------------------------------- signaling
# A raw ``websockets`` client speaking the signaling protocol, and the stand-alone server
# in a subprocess (``python -m rtclab.signaling`` or ``rtclab serve``).

WS_TIMEOUT = 2.0


async def ws_recv(ws: ClientConnection, timeout: float = WS_TIMEOUT) -> dict[str, Any]:
    """The next message, decoded (fails the test after ``timeout`` s)."""
    msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(msg, dict)
    return msg


async def ws_send(ws: ClientConnection, obj: Any) -> None:
    await ws.send(json.dumps(obj))


async def ws_join(ws: ClientConnection, room: str, user: str, **extra: Any) -> dict[str, Any]:
    """Send ``join`` and return the reply (``room-joined`` or an ``error``)."""
    await ws_send(ws, {"type": "join", "roomId": room, "userId": user, **extra})
    return await ws_recv(ws)


async def ws_client(url: str, room: str | None = None, user: str | None = None) -> ClientConnection:
    """A connected client, joined to ``room`` as ``user`` when both are given."""
    ws = await connect(url, compression=None)
    if room is not None and user is not None:
        assert (await ws_join(ws, room, user))["type"] == "room-joined"
    return ws


async def ws_nothing(ws: ClientConnection, timeout: float = 0.15) -> None:
    """Assert that no message arrives within ``timeout``."""
    with pytest.raises(asyncio.TimeoutError):
        msg = await asyncio.wait_for(ws.recv(), timeout)
        pytest.fail(f"unexpected message {msg!r}")


async def ws_closed_with(ws: ClientConnection, timeout: float = WS_TIMEOUT) -> int | None:
    """Read until the server closes; its close code (``None`` if it sent no close frame)."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return None if info.value.rcvd is None else info.value.rcvd.code


class ServerProcess:
    """A stand-alone signaling server in a subprocess, listening on :attr:`url`."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def stderr(self) -> str:
        """Everything it wrote to stderr (call after :meth:`stop`; needs ``stderr=PIPE``)."""
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()


async def start_server(
    *args: str,
    module: str = "rtclab.signaling",
    stderr: int = asyncio.subprocess.PIPE,
    timeout: float = 15.0,
) -> ServerProcess:
    """``python -m MODULE ARGS --port 0``, once it printed the URL it listens on.

    ``module="rtclab.cli"`` with ``args`` starting with ``serve`` runs ``rtclab serve``.
    With ``stderr=PIPE`` (the default) keep the logging light or read it: the pipe is
    only drained by :meth:`ServerProcess.stderr`.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
    if not line:
        err = (await proc.stderr.read()).decode() if proc.stderr is not None else ""
        await proc.wait()
        pytest.fail(f"server did not start: {err}")
    return ServerProcess(proc, line.split()[-1])


# ----------------------------------------------------------------------------- namespaces


def netns_unavailable() -> str | None:
    """Why the namespace backend cannot run here, or ``None`` when it can."""
    from rtclab.net.netns import NetnsUnavailable, require_netns

    try:
        require_netns()
    except NetnsUnavailable as exc:
        return str(exc)
    return None


def needs_root(test: Callable[..., Any]) -> Callable[..., Any]:
    """Marked ``netns`` and skipped without root, test by test (not every test needs it)."""
    skip = pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable()))
    return pytest.mark.netns(skip(test))
