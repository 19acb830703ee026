"""Relay hot path in isolation: CPU time per relayed message, no sockets, no load generator.

    .venv/bin/python bench/signaling_hotpath.py [--messages 200000] [--batch 32] [--profile]

Two upgraded connections on fake transports; the sender's ``data_received`` gets batches
of masked ``ice-candidate`` frames like load a's (315 B on the wire), then the loop flushes.
Reports microseconds per message (best of 5), the number to watch when a rule is added to
the relay path: it is not disturbed by other processes the way end-to-end throughput is.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import pstats
import struct
import time
from typing import Any

from rtclab.signaling.connection import Connection
from rtclab.signaling.rules import TokenBucket
from rtclab.signaling.server import SignalingServer


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def frame(text: str) -> bytes:
    payload = text.encode()
    n = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    return head + b"\x00\x00\x00\x00" + payload


def upgrade(server: SignalingServer, number: int) -> tuple[Connection, FakeTransport]:
    conn = Connection(server._hooks, number)
    transport = FakeTransport()
    conn.connection_made(transport)
    key = base64.b64encode(b"0123456789abcdef").decode()
    conn.data_received(
        f"GET /signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return conn, transport


async def run(messages: int, batch: int, profile: bool, rate_limit: bool) -> float:
    server = SignalingServer()
    server._loop = asyncio.get_running_loop()
    a, _ = upgrade(server, 1)
    b, tb = upgrade(server, 2)
    a.data_received(frame(json.dumps({"type": "join", "roomId": "r", "userId": "a"})))
    b.data_received(frame(json.dumps({"type": "join", "roomId": "r", "userId": "b"})))
    server._flush()
    candidate = {
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host " + "x" * 150,
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "src": "a",
        "seq": 1,
    }
    chunk = (
        frame(
            json.dumps(
                {"type": "ice-candidate", "to": "b", "candidate": candidate}, separators=(",", ":")
            )
        )
        * batch
    )
    # keep the limiter's cost in, but with a burst the benchmark never exhausts
    server._hub._clients[a].bucket = (
        TokenBucket(1e9, 1e12, time.monotonic()) if rate_limit else None
    )
    rounds = messages // batch
    prof = cProfile.Profile() if profile else None
    best = float("inf")
    for _ in range(5):
        if prof:
            prof.enable()
        t = time.process_time()
        for _ in range(rounds):
            a.data_received(chunk)
            server._flush()
        best = min(best, (time.process_time() - t) / (rounds * batch) * 1e6)
        if prof:
            prof.disable()
    assert tb.written > 0 and server._hub.relayed == 5 * rounds * batch
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="drop the sender's token bucket (on by default, as in the server)",
    )
    args = ap.parse_args()
    us = asyncio.run(run(args.messages, args.batch, args.profile, not args.no_rate_limit))
    print(f"{us:.2f} us CPU per relayed message (best of 5, batch {args.batch})")


if __name__ == "__main__":
    main()
