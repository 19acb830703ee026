"""Link impairment for a network namespace in userspace, through NFQUEUE.

This kernel has no ``netem``, so the namespace backend cannot ask the kernel to delay or
drop packets. Instead iptables hands the namespace's UDP packets to a queue, and a small
process inside the namespace decides each packet's fate with the same :class:`LinkState`
the emulated network uses: a lost packet gets ``NF_DROP`` at once, any other packet is held
and gets ``NF_ACCEPT`` when the model says it arrives. Verdicts may be given in any order,
which is what makes delay and jitter possible without copying packets out and back in.

The NFQUEUE client speaks raw netlink (``NETLINK_NETFILTER``) with the standard library
only, so nothing beyond Python is needed in the namespace. Run as a module it is the
impairing process (see :func:`main`); :func:`impair_namespace` starts it from the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import dataclasses
import errno
import heapq
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .link import Link, LinkState

__all__ = [
    "NF_ACCEPT",
    "NF_DROP",
    "NamespaceImpairment",
    "NfqueueError",
    "NfqueueSocket",
    "QueuedPacket",
    "config_message",
    "impair_namespace",
    "main",
    "parse_messages",
    "parse_packet",
    "verdict_message",
]

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD, NFQA_CAP_LEN = 1, 2, 10, 13
NF_DROP, NF_ACCEPT = 0, 1
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
SO_RCVBUFFORCE = 33  # not exported by the socket module; lets root exceed rmem_max
SOL_NETLINK, NETLINK_NO_ENOBUFS = 270, 5

# Only the headers are copied to us: the model needs the size, which the kernel reports in
# NFQA_CAP_LEN when it truncates, and copying whole video packets would cost for nothing.
COPY_RANGE = 128
QUEUE_MAXLEN = 4096
RCVBUF = 8 << 20

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, portid (host byte order)
_NFGENMSG = struct.Struct(">BBH")  # family, version, res_id (the queue number)
_NLATTR = struct.Struct("=HH")  # len, type


class NfqueueError(RuntimeError):
    """NFQUEUE impairment cannot be set up (not root, no iptables, queue busy, ...)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, data: bytes) -> bytes:
    length = _NLATTR.size + len(data)
    return _NLATTR.pack(length, kind) + data + b"\0" * (_align(length) - length)


def _attrs(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _NLATTR.size : offset + length]
        offset += _align(length)
    return found


def _message(
    msg_type: int, queue: int, attrs: bytes, *, flags: int, seq: int, family: int = 0
) -> bytes:
    body = _NFGENMSG.pack(family, 0, queue) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def config_message(
    queue: int,
    *,
    cmd: int | None = None,
    copy_range: int | None = None,
    maxlen: int | None = None,
    seq: int = 0,
) -> bytes:
    """An NFQNL_MSG_CONFIG request (with ACK, so errors such as EBUSY come back to us)."""
    attrs = b""
    if cmd is not None:
        attrs += _attr(NFQA_CFG_CMD, struct.pack(">BBH", cmd, 0, 0))
    if copy_range is not None:
        attrs += _attr(NFQA_CFG_PARAMS, struct.pack(">IB", copy_range, NFQNL_COPY_PACKET))
    if maxlen is not None:
        attrs += _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", maxlen))
    return _message(NFQNL_MSG_CONFIG, queue, attrs, flags=NLM_F_REQUEST | NLM_F_ACK, seq=seq)


def verdict_message(queue: int, packet_id: int, verdict: int, seq: int = 0) -> bytes:
    """An NFQNL_MSG_VERDICT for one packet; no ACK, a verdict per packet must stay cheap."""
    attrs = _attr(NFQA_VERDICT_HDR, struct.pack(">II", verdict, packet_id))
    return _message(NFQNL_MSG_VERDICT, queue, attrs, flags=NLM_F_REQUEST, seq=seq)


@dataclass(frozen=True)
class NetlinkMessage:
    kind: int
    flags: int
    seq: int
    body: bytes

    @property
    def error(self) -> int | None:
        """For NLMSG_ERROR: 0 for an ACK, else a positive errno; None for other messages."""
        if self.kind != NLMSG_ERROR or len(self.body) < 4:
            return None
        code: int = struct.unpack_from("=i", self.body)[0]
        return -code


def parse_messages(data: bytes) -> Iterator[NetlinkMessage]:
    """Split one netlink datagram into its messages (4-byte aligned, host byte order)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        yield NetlinkMessage(kind, flags, seq, data[offset + _NLMSGHDR.size : offset + length])
        offset += _align(length)


@dataclass(frozen=True)
class QueuedPacket:
    """One packet the kernel holds for us; ``size`` is the whole IP packet, not the copy."""

    queue: int
    packet_id: int
    hw_protocol: int
    hook: int
    size: int
    payload: bytes


def parse_packet(message: NetlinkMessage) -> QueuedPacket | None:
    """The packet in an NFQNL_MSG_PACKET message, or None for any other message."""
    if message.kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
        return None
    if len(message.body) < _NFGENMSG.size:
        return None
    _, _, queue = _NFGENMSG.unpack_from(message.body)
    attrs = _attrs(message.body[_NFGENMSG.size :])
    header = attrs.get(NFQA_PACKET_HDR)
    if header is None or len(header) < 7:
        return None
    packet_id, hw_protocol, hook = struct.unpack_from(">IHB", header)
    payload = attrs.get(NFQA_PAYLOAD, b"")
    cap_len = attrs.get(NFQA_CAP_LEN)
    size = struct.unpack(">I", cap_len[:4])[0] if cap_len else len(payload)
    return QueuedPacket(queue, packet_id, hw_protocol, hook, size, payload)


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
            self._request(config_message(queue, cmd=NFQNL_CFG_CMD_BIND, seq=self._next()))
            self._request(
                config_message(queue, copy_range=COPY_RANGE, maxlen=maxlen, seq=self._next())
            )
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _request(self, message: bytes) -> None:
        seq = _NLMSGHDR.unpack_from(message)[3]
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
        for packet in self.sock.receive():
            if not self.open:
                self.sock.verdict(packet.packet_id, NF_ACCEPT)
                continue
            now = self.loop.time()
            arrive = self.state.admit(now, packet.size)
            if arrive is None:
                self.sock.verdict(packet.packet_id, NF_DROP)
            elif arrive <= now and not self._held:
                self.sock.verdict(packet.packet_id, NF_ACCEPT)
            else:
                self._order += 1
                heapq.heappush(self._held, (arrive, self._order, packet.packet_id))
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
        while self._held and self._held[0][0] <= now:
            self.sock.verdict(heapq.heappop(self._held)[2], NF_ACCEPT)
        self._arm()

    def flush(self) -> None:
        """Accept everything held and anything still queued: stopping must not drop traffic."""
        self.open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._held:
            self.sock.verdict(heapq.heappop(self._held)[2], NF_ACCEPT)
        self.on_readable()

    def counters(self) -> dict[str, int]:
        return {
            "sent": self.state.sent,
            "lost": self.state.lost,
            "queue_drops": self.state.queue_drops,
            "kernel_drops": self.sock.kernel_drops(),
        }


async def _serve(up_queue: int, down_queue: int, link: Link, seed: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    directions: dict[str, _Direction] = {}
    try:
        directions["up"] = _Direction(up_queue, link, seed, loop)
        directions["down"] = _Direction(down_queue, link, seed + 1, loop)
        for direction in directions.values():
            loop.add_reader(direction.sock.fileno(), direction.on_readable)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def on_stdin() -> None:
            if not os.read(sys.stdin.fileno(), 4096):
                stop.set()

        # stdin EOF means the parent is gone; /dev/null or a file cannot be watched, so skip
        with contextlib.suppress(OSError, ValueError):
            loop.add_reader(sys.stdin.fileno(), on_stdin)
        print(json.dumps({"ready": True}), flush=True)
        await stop.wait()
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
    parser.add_argument("--link", default="{}", help="Link fields as JSON")
    parser.add_argument("--seed", type=int, default=0, help="uplink seed; downlink uses seed+1")
    args = parser.parse_args(argv)
    try:
        link = Link(**json.loads(args.link))
        counters = asyncio.run(_serve(args.up_queue, args.down_queue, link, args.seed))
    except (NfqueueError, OSError, ValueError, TypeError) as exc:
        print(f"rtclab.net.nfqueue: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counters), flush=True)
    return 0


# --- the parent side -------------------------------------------------------------------------


def _iptables_rules(queues: tuple[int, int]) -> list[list[str]]:
    up, down = queues
    return [
        ["OUTPUT", "!", "-o", "lo", "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(up)],
        ["INPUT", "!", "-i", "lo", "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(down)],
    ]


def _iptables(namespace: str, action: str, rule: list[str]) -> subprocess.CompletedProcess[str]:
    command = ["ip", "netns", "exec", namespace, "iptables", "-w", action, *rule]
    return subprocess.run(command, capture_output=True, text=True, timeout=15)


_live: set[NamespaceImpairment] = set()


def _close_all() -> None:
    for impairment in list(_live):
        with contextlib.suppress(Exception):
            impairment.close()


atexit.register(_close_all)  # the namespace backend deletes namespaces; rules are ours


class NamespaceImpairment:
    """A running impairment of one namespace: the process and its iptables rules.

    :meth:`close` (or leaving the ``with`` block) removes both and returns the counters
    ``{"up": {...}, "down": {...}}`` with ``sent``, ``lost``, ``queue_drops`` and
    ``kernel_drops`` (packets the kernel dropped because our queue or socket was full).
    """

    def __init__(
        self,
        namespace: str,
        link: Link,
        queues: tuple[int, int],
        process: subprocess.Popen[str],
        stderr: IO[str],
    ) -> None:
        self.namespace = namespace
        self.link = link
        self.queues = queues
        self.process = process
        self._stderr = stderr
        self._rules: list[list[str]] = []
        self.counters: dict[str, Any] | None = None

    def _errors(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().strip()

    def _install(self) -> None:
        for rule in _iptables_rules(self.queues):
            result = _iptables(self.namespace, "-A", rule)
            if result.returncode != 0:
                raise NfqueueError(
                    f"iptables in namespace {self.namespace!r} failed: {result.stderr.strip()}"
                )
            self._rules.append(rule)

    def close(self) -> dict[str, Any]:
        """Remove the rules, then stop the process (it accepts what it holds) and return counters.

        Rules go first so no packet meets a queue nobody reads (the kernel would drop it).
        Idempotent; tolerant of a namespace that is already deleted.
        """
        if self.counters is not None:
            return self.counters
        _live.discard(self)
        for rule in reversed(self._rules):
            _iptables(self.namespace, "-D", rule)  # fails harmlessly if the namespace is gone
        self._rules.clear()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        out = self.process.stdout.read()  # one line; readline() may have buffered part of it
        self.process.stdout.close()
        self.counters = {}
        for line in reversed(out.splitlines()):
            with contextlib.suppress(ValueError):
                parsed = json.loads(line)
                if isinstance(parsed, dict) and "up" in parsed:
                    self.counters = parsed
                    break
        errors = self._errors()
        self._stderr.close()
        if not self.counters:
            raise NfqueueError(
                f"impairment process in {self.namespace!r} ended without counters "
                f"(exit {self.process.returncode}): {errors}"
            )
        return self.counters

    def __enter__(self) -> NamespaceImpairment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # do not hide the error that got us here
            with contextlib.suppress(NfqueueError):
                self.close()


def _require() -> None:
    if os.geteuid() != 0:
        raise NfqueueError("NFQUEUE impairment needs root (network namespaces and iptables)")
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            raise NfqueueError(f"{tool!r} not found: install the Debian package {package!r}")


def impair_namespace(
    namespace: str,
    link: Link,
    *,
    seed: int = 0,
    queues: tuple[int, int] = (0, 1),
    timeout: float = 15.0,
) -> NamespaceImpairment:
    """Impair ``namespace``'s UDP traffic with ``link``, both ways, until ``close()``.

    Outgoing packets (``OUTPUT``, uplink) go through queue ``queues[0]``, incoming ones
    (``INPUT``, downlink) through ``queues[1]``, each direction with its own
    :class:`LinkState` (seeds ``seed`` and ``seed + 1``). Only UDP over IPv4 and not on
    ``lo`` is queued: media and ICE are impaired, TCP signaling and loopback are not, as
    in the emulated network. Routed (``FORWARD``) traffic is not touched, so impair hosts,
    not routers. The process starts and binds its queues before the rules exist, so no
    packet is ever queued to nobody. Queue numbers are per namespace.
    """
    _require()
    fields = dataclasses.asdict(link)
    command = [
        "ip", "netns", "exec", namespace, sys.executable, "-m", "rtclab.net.nfqueue",
        "--up-queue", str(queues[0]), "--down-queue", str(queues[1]),
        "--link", json.dumps(fields), "--seed", str(seed),
    ]  # fmt: skip
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    stderr = tempfile.TemporaryFile(mode="w+")  # a file, so a chatty child never blocks
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    impairment = NamespaceImpairment(namespace, link, queues, process, stderr)
    try:
        _wait_ready(process, timeout)
        impairment._install()
    except BaseException as exc:
        if process.poll() is None:
            process.kill()
        process.wait()
        for rule in impairment._rules:
            _iptables(namespace, "-D", rule)
        errors = impairment._errors()
        stderr.close()
        if isinstance(exc, NfqueueError) and not errors:
            raise
        raise NfqueueError(f"{exc}; impairment process stderr: {errors or '(empty)'}") from exc
    _live.add(impairment)
    return impairment


def _wait_ready(process: subprocess.Popen[str], timeout: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NfqueueError(f"impairment process not ready after {timeout:.0f} s")
            if selector.select(remaining):
                line = process.stdout.readline()
                if not line:
                    raise NfqueueError(f"impairment process exited ({process.wait()})")
                with contextlib.suppress(ValueError):
                    if json.loads(line) == {"ready": True}:
                        return


if __name__ == "__main__":
    sys.exit(main())
