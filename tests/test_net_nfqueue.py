"""NFQUEUE impairment of a namespace: the netlink codec, then real UDP echoes between two
namespaces (root and iptables only) showing delay, loss, jitter and rate as the model says."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rtclab.net import nfqueue
from rtclab.net.link import Link
from rtclab.net.nfqueue import (
    NF_ACCEPT,
    NamespaceImpairment,
    NfqueueError,
    impair_namespace,
    parse_messages,
    parse_packet,
)

pytestmark = pytest.mark.netns


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, NFQUEUE)"
    if shutil.which("iptables") is None:
        return "needs iptables (Debian package iptables)"
    return None


needs_root = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))


# --- the netlink codec, no root needed ---------------------------------------------------------


def _nlattr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _packet_message(queue: int, packet_id: int, payload: bytes, cap_len: int | None) -> bytes:
    attrs = _nlattr(1 | 0x4000, struct.pack(">IHB", packet_id, 0x0800, 3))  # NET_BYTEORDER
    attrs += _nlattr(10, payload)
    if cap_len is not None:
        attrs += _nlattr(13, struct.pack(">I", cap_len))
    body = struct.pack(">BBH", socket.AF_INET, 0, queue) + attrs
    return struct.pack("=IHHII", 16 + len(body), 0x0300, 0, 0, 1234) + body


def test_parse_packets_from_one_datagram() -> None:
    datagram = _packet_message(3, 42, b"E" * 21, 1228) + _packet_message(3, 43, b"E" * 28, None)
    messages = list(parse_messages(datagram))
    assert len(messages) == 2
    first, second = (parse_packet(m) for m in messages)
    assert first is not None and second is not None
    assert (first.queue, first.packet_id, first.hw_protocol, first.hook) == (3, 42, 0x0800, 3)
    assert first.payload == b"E" * 21  # padding stripped
    assert first.size == 1228  # the whole packet, not the truncated copy
    assert (second.packet_id, second.size) == (43, 28)


def test_non_packets_and_errors() -> None:
    error = struct.pack("=IHHII", 36, 2, 0, 7, 0) + struct.pack("=i", -16) + b"\0" * 16
    (message,) = parse_messages(error)
    assert parse_packet(message) is None
    assert (message.seq, message.error) == (7, 16)  # EBUSY
    ack = struct.pack("=IHHII", 36, 2, 0, 8, 0) + b"\0" * 20
    assert next(parse_messages(ack)).error == 0
    assert list(parse_messages(b"\x01\x02")) == []  # truncated: nothing, no exception


def test_verdict_and_config_bytes() -> None:
    verdict = nfqueue.verdict_message(5, 0x01020304, NF_ACCEPT, seq=9)
    assert verdict == (
        struct.pack("=IHHII", 32, 0x0301, 0x1, 9, 0)
        + bytes([0, 0, 0, 5])  # AF_UNSPEC, version 0, queue 5 big-endian
        + struct.pack("=HH", 12, 2)
        + bytes([0, 0, 0, 1, 1, 2, 3, 4])  # NF_ACCEPT, packet id, both big-endian
    )
    bind = nfqueue.config_message(5, cmd=1, seq=1)
    assert bind[4:8] == struct.pack("=HH", 0x0302, 0x5)  # CONFIG, REQUEST|ACK
    assert bind[20:] == struct.pack("=HH", 8, 1) + bytes([1, 0, 0, 0])
    params = nfqueue.config_message(5, copy_range=128, maxlen=4096)
    assert params[20:] == (
        struct.pack("=HH", 9, 2) + bytes([0, 0, 0, 128, 2]) + b"\0" * 3  # 4-byte aligned
        + struct.pack("=HH", 8, 3) + struct.pack(">I", 4096)
    )  # fmt: skip


def test_clear_errors_without_root_or_iptables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NfqueueError, match="root"):
        impair_namespace("nowhere", Link(delay_ms=10))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "iptables" else real_which(t))
    with pytest.raises(NfqueueError, match="Debian package 'iptables'"):
        impair_namespace("nowhere", Link(delay_ms=10))


# --- real packets between two namespaces --------------------------------------------------------

SERVER = "10.231.0.1"
PORT = 9000

ECHO_SERVER = """
import json, signal, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], int(sys.argv[2])))
received = 0
def stop(*_):
    print(json.dumps({"received": received}), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    received += 1
    s.sendto(data, peer)
"""

ECHO_CLIENT = """
import json, select, socket, struct, sys, time
host, port, count, interval, size, tail = sys.argv[1:7]
count, interval, size, tail = int(count), float(interval), int(size), float(tail)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.connect((host, int(port)))
s.setblocking(False)
rtts = {}
sent, start, end = 0, time.monotonic(), None
while True:
    now = time.monotonic()
    if sent < count and now >= start + sent * interval:
        s.send(struct.pack("!Id", sent, now).ljust(size, b"\\0"))
        sent += 1
        continue
    if sent == count and end is None:
        end = now + tail
    if end is not None and (now >= end or len(rtts) == count):
        break
    wake = start + sent * interval if sent < count else end
    if select.select([s], [], [], max(0.0, wake - now))[0]:
        while True:
            try:
                data = s.recv(4096)
            except BlockingIOError:
                break
            seq, t0 = struct.unpack_from("!Id", data)
            rtts[seq] = time.monotonic() - t0
print(json.dumps({"sent": sent, "rtts": list(rtts.values())}))
"""


@dataclass
class Pair:
    server: str  # namespace with the echo server at 10.231.0.1
    client: str  # namespace with the client at 10.231.0.2, the one we impair


@dataclass
class Echo:
    sent: int
    received: int  # by the server: what survived the uplink
    rtts: list[float]  # seconds, one per echo back at the client

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rtts) * 1000

    @property
    def stdev_ms(self) -> float:
        return statistics.stdev(self.rtts) * 1000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=15)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    base = f"rtclab-nfq-{os.getpid()}-"
    names = Pair(base + "srv", base + "cli")
    made: list[str] = []
    try:
        for name in (names.server, names.client):
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        # created inside the namespaces: the machine's own namespace never sees the veths
        _ip("-n", names.server, "link", "add", "nfq0", "type", "veth", "peer", "name", "nfq1",
            "netns", names.client)  # fmt: skip
        for name, dev, addr in (
            (names.server, "nfq0", SERVER),
            (names.client, "nfq1", "10.231.0.2"),
        ):
            _ip("-n", name, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", name, "link", "set", dev, "up")
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _echo(pair: Pair, count: int, interval: float, *, size: int = 100, tail: float = 1.0) -> Echo:
    server = subprocess.Popen(
        ["ip", "netns", "exec", pair.server, sys.executable, "-c", ECHO_SERVER, SERVER, str(PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        args = [SERVER, str(PORT), str(count), str(interval), str(size), str(tail)]
        client = subprocess.run(
            ["ip", "netns", "exec", pair.client, sys.executable, "-c", ECHO_CLIENT, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        server.terminate()
        received = json.loads(server.communicate(timeout=10)[0])["received"]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    result = json.loads(client.stdout)
    return Echo(result["sent"], received, result["rtts"])


def _rules(namespace: str) -> str:
    command = ["ip", "netns", "exec", namespace, "iptables", "-S"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def _closed(pair: Pair, impairment: NamespaceImpairment) -> dict[str, dict[str, int]]:
    counters = impairment.close()
    assert "NFQUEUE" not in _rules(pair.client)
    assert impairment.process.returncode == 0
    assert not Path(f"/proc/{impairment.process.pid}").exists()
    return counters


@needs_root
def test_unimpaired_baseline_and_a_clean_link_are_fast(pair: Pair) -> None:
    bare = _echo(pair, 50, 0.005)
    impairment = impair_namespace(pair.client, Link(), seed=1)
    assert "NFQUEUE --queue-num 0" in _rules(pair.client)
    through = _echo(pair, 50, 0.005)
    counters = _closed(pair, impairment)
    print(f"\nbaseline median RTT {bare.median_ms:.2f} ms, via NFQUEUE {through.median_ms:.2f} ms")
    assert len(bare.rtts) == len(through.rtts) == 50
    assert bare.median_ms < 5 and through.median_ms < 10
    assert counters["up"]["sent"] == counters["down"]["sent"] == 50


@needs_root
def test_delay_applies_both_ways(pair: Pair) -> None:
    with impair_namespace(pair.client, Link(delay_ms=50), seed=2) as impairment:
        echo = _echo(pair, 100, 0.01)
    assert "NFQUEUE" not in _rules(pair.client) and impairment.process.returncode == 0
    print(f"\n50 ms each way: median RTT {echo.median_ms:.1f} ms, stdev {echo.stdev_ms:.2f} ms")
    assert len(echo.rtts) == 100
    assert echo.median_ms == pytest.approx(100, rel=0.15)


@needs_root
def test_jitter_spreads_the_rtt(pair: Pair) -> None:
    spreads = {}
    for jitter in (0.0, 20.0):
        impairment = impair_namespace(pair.client, Link(delay_ms=50, jitter_ms=jitter), seed=3)
        echo = _echo(pair, 150, 0.01)
        _closed(pair, impairment)
        assert len(echo.rtts) == 150
        spreads[jitter] = echo.stdev_ms
        print(f"\njitter {jitter} ms: median {echo.median_ms:.1f} ms, stdev {echo.stdev_ms:.2f} ms")
    # the model keeps FIFO order, which trims the spread a little below 20 ms; a busy CPU
    # adds its own scheduling noise to both runs, hence a ratio and not a bound on the first
    assert spreads[20.0] > 12 and spreads[20.0] > 2 * spreads[0.0]


@needs_root
def test_loss_each_way_and_counters_match(pair: Pair) -> None:
    impairment = impair_namespace(pair.client, Link(loss=0.05), seed=4)
    echo = _echo(pair, 1200, 0.002)
    counters = _closed(pair, impairment)
    uplink = 1 - echo.received / echo.sent  # measured at the server
    downlink = 1 - len(echo.rtts) / echo.received
    round_trip = 1 - len(echo.rtts) / echo.sent
    print(f"\nloss 5 %: uplink {uplink:.2%}, downlink {downlink:.2%}, round trip {round_trip:.2%}")
    assert uplink == pytest.approx(0.05, abs=0.02)
    assert downlink == pytest.approx(0.05, abs=0.02)
    assert counters["up"] == {
        "sent": echo.sent,
        "lost": echo.sent - echo.received,
        "queue_drops": 0,
        "kernel_drops": 0,
    }
    assert counters["down"] == {
        "sent": echo.received,
        "lost": echo.received - len(echo.rtts),
        "queue_drops": 0,
        "kernel_drops": 0,
    }


@needs_root
def test_rate_limit_counts_the_whole_packet(pair: Pair) -> None:
    # 20 packets of 1228 bytes at 800 kbit/s take 0.25 s to leave; only 128 bytes of each
    # reach us, so a model fed the copied length would let them through in 26 ms
    with impair_namespace(pair.client, Link(rate_kbps=800), seed=5):
        echo = _echo(pair, 20, 0.0, size=1200)
    assert len(echo.rtts) == 20
    print(f"\n800 kbit/s, 20 x 1228 B at once: last echo after {max(echo.rtts) * 1000:.0f} ms")
    assert 0.2 < max(echo.rtts) < 0.35


@needs_root
def test_busy_queue_and_vanished_namespace(pair: Pair) -> None:
    with impair_namespace(pair.client, Link(delay_ms=5)):
        with pytest.raises(NfqueueError, match="another process") as caught:
            impair_namespace(pair.client, Link(delay_ms=5))
        assert "stderr" in str(caught.value)
        # one set of rules: the failed attempt left nothing behind
        assert _rules(pair.client).count("NFQUEUE") == 2
    assert "NFQUEUE" not in _rules(pair.client)

    doomed = f"rtclab-nfq-{os.getpid()}-gone"
    _ip("netns", "add", doomed)
    try:
        impairment = impair_namespace(doomed, Link(loss=0.5))
    finally:
        subprocess.run(["ip", "netns", "delete", doomed], capture_output=True)
    counters = impairment.close()  # rules are gone with the namespace; the process still stops
    assert counters["up"]["sent"] == 0
    assert not Path(f"/proc/{impairment.process.pid}").exists()
