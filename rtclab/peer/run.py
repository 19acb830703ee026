"""`rtclab peer`: one peer as its own process — a remote you can kill, freeze or move."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from .peer import Peer


def run_peer(
    signaling_url: str,
    name: str,
    *,
    room: str = "lab",
    duration: float | None = None,
    **options: Any,
) -> int:
    """Join, print each event as a JSON line, leave on SIGINT/SIGTERM or after ``duration``."""

    def show(peer: str, remote: str | None, event: str, value: Any) -> None:
        line = {"peer": peer, "remote": remote, "event": event, "value": value}
        print(json.dumps(line, default=str), flush=True)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        peer = Peer(name, signaling_url, room=room, **options)
        peer.add_listener(show)
        try:
            await peer.join()
        except (ConnectionError, OSError) as exc:
            print(f"rtclab peer: {exc}", file=sys.stderr)
            return 1
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        finally:
            await peer.close()
        return 0

    return asyncio.run(main())
