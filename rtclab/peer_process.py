"""`rtclab peer`: one peer as its own process — a remote you can kill, freeze or move."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
from typing import Any

from .peer import Peer
from .signaling.client import SignalingError

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

    def show(peer: str, remote: str | None, event: str, value: Any) -> None:
        line = {"peer": peer, "remote": remote, "event": event, "value": value}
        print(json.dumps(line, default=str), flush=True)

    def emit_rows(rows: list[dict[str, Any]]) -> None:
        print(json.dumps({"rows": [_json_row(r) for r in rows]}, default=str), flush=True)

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


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A samples row as JSON: the reader restamps time, NaN becomes null."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("t", "elapsed_s"):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out
