"""One worker process of a load test: ``python -m rtclab.experiments._load_worker PARENT_PID``.

It speaks JSON lines. In on stdin: the spec (its peers, the URL, media options), then
``go`` (all peers join at once), then ``stop`` (leave). Out on stdout: ``ready`` once
aiortc is imported, one ``row`` per peer as soon as it is connected with a first frame
from every other member of its room (or failed), ``settled`` when all are, then the
frame rates received while the call was held and ``done``. The end of stdin also stops
it, and Linux kills it when its parent dies (``PR_SET_PDEATHSIG``, asked for between
fork and exec): no orphans.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from ..ice.config import IceConfig
from ..peer.peer import Peer
from ..peer.resilience import Resilience
from ..signaling.client import SignalingError


def _send(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def _ms(start: float, end: float | None) -> float | None:
    return None if end is None else round((end - start) * 1000.0, 1)


async def _one_peer(peer: Peer, remotes: list[str], spec: dict[str, Any]) -> dict[str, Any]:
    """Join, wait for every remote's connection and first video frame -> the peer's row."""
    row: dict[str, Any] = {"peer": peer.name, "room": peer.room, "connected": False,
                           "first_frame": False}  # fmt: skip
    timeout = float(spec["connect_timeout"])
    began = time.monotonic()
    try:
        await peer.join()
    except SignalingError as exc:
        return {**row, "failure": f"join-refused:{exc.code}", "error": exc.message}
    except (ConnectionError, OSError) as exc:
        return {**row, "failure": "unreachable", "error": str(exc)}
    row["join_ms"] = _ms(began, time.monotonic())
    try:
        await peer.wait_connected(count=len(remotes), timeout=timeout, channels=False)
    except TimeoutError as exc:
        return {**row, "failure": "connect-timeout", "error": str(exc)}
    except ConnectionError as exc:
        return {**row, "failure": "connect-failed", "error": str(exc)}
    conns = [peer.connections[r] for r in remotes if r in peer.connections]
    row["connected"] = True
    row["connected_ms"] = max(_ms(began, c.connected_at) or 0.0 for c in conns)
    if not spec["video"]:
        return row
    deadline = began + timeout
    while time.monotonic() < deadline:
        if all(c.first_frame_at is not None for c in conns):
            break
        await asyncio.sleep(0.02)
    missing = ", ".join(c.remote for c in conns if c.first_frame_at is None)
    if missing:
        error = f"no video frame from {missing} after {timeout:g}s"
        return {**row, "failure": "no-first-frame", "error": error}
    row["first_frame"] = True
    row["first_frame_ms"] = max(_ms(began, c.first_frame_at) or 0.0 for c in conns)
    return row


def _frames(peer: Peer) -> int:
    return sum(c.counters.frames_received.get("video", 0) for c in peer.connections.values())


async def run(spec: dict[str, Any], commands: asyncio.StreamReader) -> None:
    """The worker's life: peers made, ``go``, rows, ``settled``, held until ``stop``."""
    ice = IceConfig(connect_timeout=float(spec["connect_timeout"]))
    media = {key: spec[key] for key in ("video", "audio", "width", "height", "fps")}
    peers = {
        p["name"]: Peer(p["name"], spec["url"], room=p["room"], ice=ice, qoe=False,
                        data=not spec["video"], resilience=Resilience(enabled=False), **media)
        for p in spec["peers"]
    }  # fmt: skip
    remotes = {p["name"]: list(p["remotes"]) for p in spec["peers"]}
    _send({"ready": os.getpid()})
    if (await commands.readline()).strip() != b"go":
        return  # the parent went away (or gave up) before the start
    try:

        async def report(peer: Peer) -> None:
            row = await _one_peer(peer, remotes[peer.name], spec)
            _send({"row": row})

        await asyncio.gather(*(report(p) for p in peers.values()))
        held_from = time.monotonic()
        before = {name: _frames(p) for name, p in peers.items()}
        _send({"settled": True})
        await commands.readline()  # ``stop``, or the end of stdin
        held = max(time.monotonic() - held_from, 1e-9)
        rates = {
            name: (_frames(p) - before[name]) / held / len(remotes[name]) if spec["video"] else None
            for name, p in peers.items()
        }
        _send({"rates": rates})
    finally:
        await asyncio.gather(*(p.close() for p in peers.values()), return_exceptions=True)
    _send({"done": True})


async def _main(parent: int) -> None:
    if os.getppid() != parent:
        return  # it died before it could ask Linux to kill this process with it
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    line = await commands.readline()
    if line:
        await run(json.loads(line), commands)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m rtclab.experiments._load_worker PARENT_PID", file=sys.stderr)
        return 2
    asyncio.run(_main(int(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
