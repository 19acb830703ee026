"""`rtclab peer`: one peer as its own process — a remote you can kill, freeze or move."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any

from .peer import Peer
from .signaling.client import SignalingError
from .wire import encode_line, event_message, rows_message

_JOIN_HINTS = {
    "duplicate-user": "pick another --name (or stop the peer using this one)",
    "unauthorized": "add ?token=TOKEN (the server's) to the --signal URL",
    "room-full": "join another --room",
}


def run_peer(
    signaling_url: str,
    name: str,
    *,
    room: str = "lab",
    duration: float | None = None,
    stats_interval: float | None = None,
    **options: Any,
) -> int:
    """Join, print each event as a JSON line, leave on SIGINT/SIGTERM or after ``duration``.

    With ``stats_interval`` it also polls its own getStats and prints ``{"rows": [...]}``
    lines in the samples frame's units, so whoever started it (a lab reading a namespace
    peer's stdout) can append them with :meth:`StatsCollector.add_rows`.
    """

    def write(message: dict[str, Any]) -> None:
        sys.stdout.buffer.write(encode_line(message))
        sys.stdout.flush()

    def show(peer: str, remote: str | None, event: str, value: Any) -> None:
        write(event_message(peer, remote, event, value))

    def emit_rows(rows: list[dict[str, Any]]) -> None:
        write(rows_message(rows))

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        peer = Peer(name, signaling_url, room=room, **options)
        peer.add_listener(show)
        collector = None
        if stats_interval is not None:
            from .stats.collector import StatsCollector

            collector = StatsCollector(interval=stats_interval, window=None)
            collector.add(peer)
            collector.on_sample(emit_rows)
        try:
            await peer.join()
        except (ConnectionError, OSError) as exc:
            print(f"rtclab peer: {exc}", file=sys.stderr)
            return 1
        except SignalingError as exc:  # the server refused the join: a fixable usage error
            hint = _JOIN_HINTS.get(exc.code, f"the server said {exc.code!r}")
            print(f"rtclab peer: the server refused the join: {exc.message}; {hint}",
                  file=sys.stderr)  # fmt: skip
            return 2
        try:
            if collector is not None:
                await collector.start()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        finally:
            if collector is not None:
                await collector.stop()
            await peer.close()
        return 0

    return asyncio.run(main())
