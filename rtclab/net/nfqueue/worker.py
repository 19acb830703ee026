"""The impairing process inside a namespace (``python -m rtclab.net.nfqueue``): a netlink
socket per queue and a :class:`LinkState` per direction deciding each packet's fate.

A lost packet gets ``NF_DROP`` at once, any other packet is held and gets ``NF_ACCEPT`` when
the model says it arrives. Verdicts may be given in any order, which is what makes delay
and jitter possible without copying packets out and back in. Lines on stdin
(``{"link": {...}}``) change the link live; with ``--status-file`` the link's current
capacity and queue delay are written there. Standard library only, so nothing beyond Python
is needed in the namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import heapq
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..link import Link, LinkState
from .codec import (
    NF_ACCEPT,
    NF_DROP,
    NFQNL_CFG_CMD_BIND,
    NfqueueError,
    QueuedPacket,
    config_message,
    parse_messages,
    parse_packet,
    verdict_message,
)

__all__ = ["NfqueueSocket", "main"]

NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33  # not exported by the socket module; lets root exceed rmem_max
SOL_NETLINK, NETLINK_NO_ENOBUFS = 270, 5

# Only the headers are copied to us: the model needs the size, which the kernel reports in
# NFQA_CAP_LEN when it truncates, and copying whole video packets would cost for nothing.
COPY_RANGE = 128
QUEUE_MAXLEN = 4096
RCVBUF = 8 << 20
VERDICTS_PER_SEND = 1024  # 32 KiB datagrams, well under the socket's send buffer
STATUS_INTERVAL = 0.25


class NfqueueSocket:
    """One netlink socket bound to one queue number (in the caller's network namespace)."""

    def __init__(self, queue: int, *, maxlen: int = QUEUE_MAXLEN, timeout: float = 2.0) -> None:
        self.queue = queue
        self._seq = 0
        self._early: list[QueuedPacket] = []  # packets that arrived while we waited for ACKs
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))
            try:  # a burst must not overflow the socket before we read it
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            # an overflow then drops packets (counted in /proc) instead of failing recv()
            self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            self.sock.settimeout(timeout)
            seq = self._next()
            self._request(config_message(queue, cmd=NFQNL_CFG_CMD_BIND, seq=seq), seq)
            seq = self._next()
            self._request(config_message(queue, copy_range=COPY_RANGE, maxlen=maxlen, seq=seq), seq)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _request(self, message: bytes, seq: int) -> None:
        """Send a request that asks for an ACK and wait for it (by ``seq``)."""
        self.sock.send(message)
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise NfqueueError(
                    f"no answer from nfnetlink_queue for queue {self.queue}"
                ) from None
            for reply in parse_messages(data):
                packet = parse_packet(reply)
                if packet is not None:
                    self._early.append(packet)
                elif reply.error is not None and reply.seq == seq:
                    if reply.error in (errno.EPERM, errno.EBUSY):
                        # EPERM is also the kernel's answer when another socket owns the queue
                        raise NfqueueError(
                            f"NFQUEUE {self.queue} is bound by another process, or this one "
                            f"lacks CAP_NET_ADMIN ({os.strerror(reply.error)})"
                        )
                    if reply.error:
                        raise NfqueueError(
                            f"binding NFQUEUE {self.queue} failed: {os.strerror(reply.error)}"
                        )
                    return

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[QueuedPacket]:
        """Every packet waiting on the socket (non-blocking)."""
        packets, self._early = self._early, []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return packets
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue
                raise
            for message in parse_messages(data):
                packet = parse_packet(message)
                if packet is not None:
                    packets.append(packet)

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.sock.send(verdict_message(self.queue, packet_id, verdict))

    def verdicts(self, decided: Sequence[tuple[int, int]]) -> None:
        """Verdicts for many ``(packet id, verdict)`` at once: netlink takes several messages
        in one datagram, so a burst costs one system call instead of one per packet."""
        for start in range(0, len(decided), VERDICTS_PER_SEND):
            chunk = decided[start : start + VERDICTS_PER_SEND]
            self.sock.send(b"".join(verdict_message(self.queue, p, v) for p, v in chunk))

    def kernel_drops(self) -> int:
        """Packets the kernel dropped for this queue (queue full, or socket overflow)."""
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines():
                fields = line.split()
                if len(fields) >= 7 and fields[0] == str(self.queue):
                    return int(fields[5]) + int(fields[6])
        return 0

    def close(self) -> None:
        """Unbinding makes the kernel drop what it still holds: release packets first."""
        self.sock.close()


class _Direction:
    """One queue and one :class:`LinkState`; held packets wait in a heap for their time.

    Our own heap (not one ``call_at`` per packet) keeps packets with the same arrival time
    in their arrival order, which the FIFO model promises; a single timer serves it.
    """

    def __init__(self, queue: int, link: Link, seed: int, loop: asyncio.AbstractEventLoop):
        self.state = LinkState(link, seed)
        self.sock = NfqueueSocket(queue)
        self.loop = loop
        self._held: list[tuple[float, int, int]] = []  # (arrival, order, packet id)
        self._order = 0
        self._timer: asyncio.TimerHandle | None = None
        self.open = True

    def on_readable(self) -> None:
        decided: list[tuple[int, int]] = []
        for packet in self.sock.receive():
            if not self.open:
                decided.append((packet.packet_id, NF_ACCEPT))
                continue
            now = self.loop.time()
            arrive = self.state.admit(now, packet.size)
            if arrive is None:
                decided.append((packet.packet_id, NF_DROP))
            elif arrive <= now and not self._held:
                decided.append((packet.packet_id, NF_ACCEPT))
            else:
                self._order += 1
                heapq.heappush(self._held, (arrive, self._order, packet.packet_id))
        self.sock.verdicts(decided)
        self._arm()

    def _arm(self) -> None:
        first = self._held[0][0] if self._held else None
        if self._timer is not None and self._timer.when() == first:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if first is not None:
            self._timer = self.loop.call_at(first, self._release)

    def _release(self) -> None:
        self._timer = None
        now = self.loop.time()
        due = []
        while self._held and self._held[0][0] <= now:
            due.append((heapq.heappop(self._held)[2], NF_ACCEPT))
        self.sock.verdicts(due)
        self._arm()

    def flush(self) -> None:
        """Accept everything held and anything still queued: stopping must not drop traffic."""
        self.open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held = [(heapq.heappop(self._held)[2], NF_ACCEPT) for _ in range(len(self._held))]
        self.sock.verdicts(held)
        self.on_readable()

    def counters(self, *, kernel: bool = True) -> dict[str, int]:
        counters = {
            "sent": self.state.sent,
            "lost": self.state.lost,
            "queue_drops": self.state.queue_drops,
            "down_drops": self.state.down_drops,
            "served_bytes": self.state.served_bytes,
        }
        if kernel:
            counters["kernel_drops"] = self.sock.kernel_drops()
        return counters


def _apply(line: bytes, directions: dict[str, _Direction], now: float) -> None:
    """One control line from the parent: ``{"link": {...}}`` changes the link live."""
    try:
        message = json.loads(line)
        link = Link(**message["link"])
    except (ValueError, TypeError, KeyError) as exc:
        print(f"rtclab.net.nfqueue: ignored control line: {exc}", file=sys.stderr, flush=True)
        return
    for direction in directions.values():
        direction.state.set_link(link, now)


def _write_status(path: str, directions: dict[str, _Direction], now: float) -> None:
    """What the link does now, for the parent's stats rows (a file: nobody blocks on it)."""
    status: dict[str, Any] = {
        name: {**d.state.status(now), **d.counters(kernel=False)} for name, d in directions.items()
    }
    status["t"] = now  # time.monotonic() of this status, to turn counters into rates
    temporary = f"{path}.tmp"
    with open(temporary, "w") as out:
        json.dump(status, out)
    os.replace(temporary, path)


async def _serve(
    up_queue: int, down_queue: int, link: Link, seed: int, status_file: str | None = None
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    directions: dict[str, _Direction] = {}
    try:
        directions["up"] = _Direction(up_queue, link, seed, loop)
        directions["down"] = _Direction(down_queue, link, seed + 1, loop)
        now = loop.time()
        for direction in directions.values():
            direction.state.set_link(link, now)  # a schedule or trace starts now
            loop.add_reader(direction.sock.fileno(), direction.on_readable)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        pending = bytearray()

        def on_stdin() -> None:
            chunk = os.read(sys.stdin.fileno(), 1 << 16)
            if not chunk:
                stop.set()
                return
            pending.extend(chunk)
            while (end := pending.find(b"\n")) >= 0:
                line = bytes(pending[:end])
                del pending[: end + 1]
                if line.strip():
                    _apply(line, directions, loop.time())

        # stdin EOF means the parent is gone; /dev/null or a file cannot be watched, so skip
        with contextlib.suppress(OSError, ValueError):
            loop.add_reader(sys.stdin.fileno(), on_stdin)
        print(json.dumps({"ready": True}), flush=True)
        while not stop.is_set():
            if status_file is not None:
                with contextlib.suppress(OSError):
                    _write_status(status_file, directions, loop.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_INTERVAL)
        for direction in directions.values():
            loop.remove_reader(direction.sock.fileno())
            direction.flush()
        return {name: direction.counters() for name, direction in directions.items()}
    finally:
        for direction in directions.values():
            direction.sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rtclab.net.nfqueue``: impair this namespace's queued packets until SIGTERM.

    Prints ``{"ready": true}`` once both queues are bound and, on SIGTERM, SIGINT or stdin
    EOF, one line of counters per direction (``up`` leaves the namespace, ``down`` enters).
    """
    parser = argparse.ArgumentParser(prog="python -m rtclab.net.nfqueue", description=__doc__)
    parser.add_argument("--up-queue", type=int, required=True, help="queue of outgoing packets")
    parser.add_argument("--down-queue", type=int, required=True, help="queue of incoming ones")
    parser.add_argument(
        "--link", default="{}", help="Link fields as JSON, or - for the first line of stdin"
    )
    parser.add_argument("--seed", type=int, default=0, help="uplink seed; downlink uses seed+1")
    parser.add_argument("--status-file", help="write the link's status (JSON) here, 4x a second")
    args = parser.parse_args(argv)
    try:  # a trace can outgrow a command-line argument (128 KiB): it comes through stdin
        text = sys.stdin.buffer.readline() if args.link == "-" else args.link
        fields = json.loads(text)
        link = Link(**fields.get("link", fields))  # the stdin line is a control line
        counters = asyncio.run(
            _serve(args.up_queue, args.down_queue, link, args.seed, args.status_file)
        )
    except (NfqueueError, OSError, ValueError, TypeError) as exc:
        print(f"rtclab.net.nfqueue: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counters), flush=True)
    return 0
