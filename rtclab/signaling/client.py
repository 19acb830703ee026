"""Async signaling client for in-kernel peers (aiortc), on ``websockets``' asyncio client.

A background reader task moves incoming messages into a queue, so a peer can ``await
recv()`` or ``async for`` at its own pace while :meth:`SignalingClient.join` waits for
its own reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

__all__ = ["SignalingClient", "SignalingError"]

_CLOSED: Final = object()  # queue sentinel: the connection is gone


class SignalingError(Exception):
    """An ``error`` reply from the server, or a client-side failure.

    ``code`` is the server's machine-readable code, or one of ``connect-failed``,
    ``closed`` and ``unexpected-reply`` for failures seen by the client.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignalingClient:
    """One signaling connection; create it with ``await SignalingClient.connect(url)``."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[dict[str, Any] | object] = asyncio.Queue()
        self._backlog: deque[dict[str, Any]] = deque()  # read by join() but not its reply
        self._eof = False
        self.user_id: str | None = None
        self.room_id: str | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, *, timeout: float = 10.0) -> SignalingClient:
        try:
            ws = await connect(url, open_timeout=timeout, compression=None, max_size=2**20)
        except (OSError, asyncio.TimeoutError) as exc:
            raise SignalingError("connect-failed", f"{url}: {exc}") from exc
        except Exception as exc:  # websockets.InvalidStatus, InvalidURI, InvalidHandshake ...
            raise SignalingError("connect-failed", f"{url}: {exc}") from exc
        return cls(ws)

    async def __aenter__(self) -> SignalingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once the connection is gone (closed by either side)."""
        return self._eof or self._reader.done()

    # ---------------------------------------------------------------- sending

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one message as JSON; raises :class:`SignalingError` (``closed``) if closed."""
        try:
            await self._ws.send(json.dumps(dict(message), separators=(",", ":")))
        except ConnectionClosed as exc:
            raise SignalingError("closed", "connection closed") from exc

    async def join(self, room_id: str, user_id: str, *, timeout: float = 10.0) -> list[str]:
        """Join a room; returns the peers already in it.

        Raises :class:`SignalingError` on an error reply (``duplicate-user``,
        ``already-joined``, ``invalid-message``...) and :class:`TimeoutError`.
        """
        await self.send({"type": "join", "roomId": room_id, "userId": user_id})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                msg = await self._next(max(0.0, deadline - loop.time()), from_backlog=False)
                kind = msg.get("type")
                if kind == "room-joined":
                    break
                if kind == "error":
                    raise SignalingError(str(msg.get("code")), str(msg.get("message")))
                skipped.append(msg)
        finally:
            self._backlog.extend(skipped)
        self.room_id, self.user_id = room_id, user_id
        peers = msg.get("peers")
        return [str(p) for p in peers] if isinstance(peers, list) else []

    async def offer(self, to: str, sdp: Mapping[str, Any]) -> None:
        await self.send({"type": "offer", "to": to, "sdp": dict(sdp)})

    async def answer(self, to: str, sdp: Mapping[str, Any]) -> None:
        await self.send({"type": "answer", "to": to, "sdp": dict(sdp)})

    async def ice_candidate(self, to: str, candidate: Mapping[str, Any] | None) -> None:
        """Trickle one candidate; ``None`` signals end-of-candidates, as browsers do."""
        await self.send(
            {
                "type": "ice-candidate",
                "to": to,
                "candidate": None if candidate is None else dict(candidate),
            }
        )

    async def leave(self) -> None:
        """Leave the current room (the others get ``peer-left``); no-op if not in one."""
        if self.room_id is None:
            return
        room_id, self.room_id = self.room_id, None
        await self.send({"type": "leave", "roomId": room_id})

    # ---------------------------------------------------------------- receiving

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """Next incoming message. Raises :class:`SignalingError` (``closed``) once the
        connection is closed and drained, :class:`TimeoutError` after ``timeout`` s."""
        return await self._next(timeout, from_backlog=True)

    def __aiter__(self) -> SignalingClient:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self._next(None, from_backlog=True)
        except SignalingError as exc:
            if exc.code == "closed":
                raise StopAsyncIteration from None
            raise

    async def close(self) -> None:
        """Close the connection and stop the reader task (idempotent)."""
        try:
            await self._ws.close()
        finally:
            if not self._reader.done():
                self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._eof = True

    # ---------------------------------------------------------------- internals

    async def _next(self, timeout: float | None, *, from_backlog: bool) -> dict[str, Any]:
        if from_backlog and self._backlog:
            return self._backlog.popleft()
        if self._eof and self._queue.empty():
            raise SignalingError("closed", "connection closed")
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no signaling message within {timeout} s") from None
        if item is _CLOSED:
            self._eof = True
            raise SignalingError("closed", "connection closed")
        assert isinstance(item, dict)
        return item

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                try:
                    msg = json.loads(frame)
                except ValueError:
                    continue  # a server we speak to only sends JSON; ignore garbage
                if isinstance(msg, dict):
                    self._queue.put_nowait(msg)
        except ConnectionClosed:
            pass
        finally:
            self._queue.put_nowait(_CLOSED)
