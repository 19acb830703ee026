"""The peer process of one namespace NAT-matrix scenario: ``python -m
rtclab.experiments._netns_peer SPEC_JSON`` joins, connects (or fails), reads the selected
pair and the SCTP round-trip time, and prints the row as its last JSON line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from ..ice.config import IceConfig, IceServer
from ..peer.peer import Peer
from ..peer.resilience import Resilience
from ._harness import path_columns, settled_sctp_rtt


async def run_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """One side of a scenario inside its host namespace -> its part of the matrix row."""
    servers = tuple(IceServer(s["urls"], s.get("username"), s.get("credential"))
                    for s in spec["ice_servers"])  # fmt: skip
    ice = IceConfig(ice_servers=servers, interfaces=(spec["address"],),
                    connect_timeout=spec["connect_timeout"],
                    ice_transport_policy=spec.get("policy", "all"),
                    tls_ca_file=spec.get("tls_ca_file"))  # fmt: skip
    idle_s = spec.get("idle_s")
    # an idle call: no heartbeats from the recovery loop, only ICE consent checks
    resilience = Resilience(enabled=False) if idle_s is not None else None
    peer = Peer(spec["name"], spec["signaling_url"], room=spec["room"], ice=ice,
                video=False, audio=False, resilience=resilience)  # fmt: skip
    row: dict[str, Any] = {"connected": False}
    began = time.monotonic()
    try:
        await peer.join()
        print(json.dumps({"joined": True}), flush=True)
        try:
            # the clock starts when the other side shows up (its process may start slowly)
            for _ in range(600):
                if peer.connections:
                    break
                await asyncio.sleep(0.05)
            await peer.wait_connected(count=1, timeout=spec["connect_timeout"] + 1)
            row["connected"] = True
        except (ConnectionError, TimeoutError) as exc:
            row["error"] = str(exc)
        conn = next(iter(peer.connections.values()), None)
        if row["connected"] and conn is not None:
            row["connect_ms"] = conn.connect_ms
            row.update(path_columns(conn))
            row["rtt_ms"] = await settled_sctp_rtt(conn, began, spec["settle_seconds"])
            if idle_s is not None:
                row["survived"] = await _probe_after_idle(peer, float(idle_s))
        await asyncio.sleep(spec.get("linger", 0.0))
    finally:
        await peer.close()
    return row


async def _probe_after_idle(peer: Peer, idle_s: float, wait_s: float = 3.0) -> bool:
    """Stay silent ``idle_s``, then send a chat line: did the other side's line arrive?
    (It may come a little before ours: the two processes do not connect at the same time.)"""
    heard = len([m for m in peer.chat_log if m.remote is not None])
    await asyncio.sleep(idle_s)
    with contextlib.suppress(ConnectionError):
        await peer.send_chat(f"still there? ({peer.name})")
    for _ in range(int(wait_s / 0.05)):
        if len([m for m in peer.chat_log if m.remote is not None]) > heard:
            return True
        await asyncio.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rtclab.experiments._netns_peer SPEC_JSON", file=sys.stderr)
        return 2
    row = asyncio.run(run_peer(json.loads(args[0])))
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
