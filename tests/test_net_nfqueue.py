"""NFQUEUE impairment of a namespace: clear errors without root, then real UDP echoes between
two namespaces (root and iptables only) showing delay, loss, jitter and rate as the model says.
The netlink codec is tested without root in test_net_nfqueue_codec.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rtclab.net.link import Link
from rtclab.net.netns.bulk import TcpBulk
from rtclab.net.nfqueue import (
    NamespaceImpairment,
    NfqueueError,
    impair_namespace,
)


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, NFQUEUE)"
    if shutil.which("iptables") is None:
        return "needs iptables (Debian package iptables)"
    return None


def needs_root(test: Callable[..., None]) -> Callable[..., None]:
    """Marked ``netns`` (and skipped without root or iptables), test by test: the module also
    holds tests that need neither."""
    skip = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))
    return pytest.mark.netns(skip(test))


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

SERVER, CLIENT = "10.231.0.1", "10.231.0.2"
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

    @property
    def iqr_ms(self) -> float:
        """The middle half's width: a busy CPU's rare stalls move the stdev, not this."""
        quartiles = statistics.quantiles(self.rtts, n=4)
        return (quartiles[2] - quartiles[0]) * 1000


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
            (names.client, "nfq1", CLIENT),
        ):
            _ip("-n", name, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", name, "link", "set", dev, "up")
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _exchange(pair: Pair, server_code: str, client_args: list[str]) -> tuple[Any, Any]:
    """Run ``server_code`` in the server namespace and ECHO_CLIENT in the client's; the JSON
    each printed (the server's on SIGTERM, once the client is done)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", pair.server, sys.executable, "-c", server_code, SERVER, str(PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        client = subprocess.run(
            ["ip", "netns", "exec", pair.client, sys.executable, "-c", ECHO_CLIENT,
             SERVER, str(PORT), *client_args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )  # fmt: skip
        server.terminate()
        served = json.loads(server.communicate(timeout=10)[0])
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return served, json.loads(client.stdout)


def _echo(pair: Pair, count: int, interval: float, *, size: int = 100, tail: float = 1.0) -> Echo:
    args = [str(count), str(interval), str(size), str(tail)]
    served, result = _exchange(pair, ECHO_SERVER, args)
    return Echo(result["sent"], served["received"], result["rtts"])


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
        spreads[jitter] = echo.iqr_ms
        print(
            f"\njitter {jitter} ms: median {echo.median_ms:.1f} ms, "
            f"stdev {echo.stdev_ms:.2f} ms, IQR {echo.iqr_ms:.2f} ms"
        )
    # 20 ms of jitter each way spreads the middle half of the RTTs over tens of ms (FIFO order
    # trims it a little); without jitter it stays within a few ms. The IQR, not the stdev:
    # a CI run on a busy machine saw 15 ms of stdev with no jitter at all, from a few stalls.
    assert spreads[20.0] > 12 and spreads[20.0] > 3 * spreads[0.0]


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
        "down_drops": 0,
        "served_bytes": 0,
        "kernel_drops": 0,
    }
    assert counters["down"] == {
        "sent": echo.received,
        "lost": echo.received - len(echo.rtts),
        "queue_drops": 0,
        "down_drops": 0,
        "served_bytes": 0,
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


# --- capacity that changes, through the queue -----------------------------------------------------

SINK = """
import json, signal, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], int(sys.argv[2])))
times, size = [], 0
def stop(*_):
    print(json.dumps({"times": times, "bytes": size}), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    data = s.recv(4096)
    times.append(time.monotonic())
    size += len(data) + 28
"""


def _sink(pair: Pair, rate_kbps: float, seconds: float, size: int = 1200) -> list[float]:
    """Send ``rate_kbps`` of ``size``-byte UDP from the client for ``seconds``; the times the
    server's sink received each packet."""
    interval = (size + 28) * 8 / (rate_kbps * 1000)
    args = [str(int(seconds / interval)), str(interval), str(size), "1.0"]
    served, _ = _exchange(pair, SINK, args)
    times: list[float] = served["times"]
    return times


@needs_root
def test_a_mahimahi_trace_delivers_its_average_rate_through_the_queue(
    pair: Pair, tmp_path: Path
) -> None:
    trace = tmp_path / "steps.trace"  # 50 opportunities in 0.5 s, then 100: 1,800 kbit/s
    trace.write_text("\n".join(str(ms) for ms in (*range(10, 501, 10), *range(505, 1001, 5))))
    link = Link.from_mahimahi(trace, queue_bytes=60_000)
    mean_kbps = len(link.trace or ()) * 1500 * 8 / 1000  # per 1 s period
    with impair_namespace(pair.client, link, seed=6):
        times = _sink(pair, rate_kbps=2 * mean_kbps, seconds=4.0)
    delivered_kbps = (len(times) - 1) * 1228 * 8 / 1000 / (times[-1] - times[0])
    print(f"\ntrace of {mean_kbps:.0f} kbit/s: delivered {delivered_kbps:.0f} kbit/s")
    assert delivered_kbps == pytest.approx(mean_kbps, rel=0.05)


@needs_root
def test_overload_queue_delay_is_queue_size_over_rate_through_the_queue(pair: Pair) -> None:
    link = Link(rate_kbps=1000, queue_bytes=25_000)  # 25 kB at 125 kB/s: 200 ms
    with impair_namespace(pair.client, link, seed=7) as impairment:
        echo = _echo(pair, 300, 1228 * 8 / 2_000_000, size=1200)  # 2 Mbit/s for 3 s
        status = impairment.status()
    steady = echo.rtts[len(echo.rtts) // 3 :]
    print(f"\noverload, 200 ms queue: median RTT {statistics.median(steady) * 1000:.0f} ms")
    assert statistics.median(steady) == pytest.approx(0.2, rel=0.2)
    assert status["up"]["capacity_kbps"] == 1000 and status["up"]["queue_drops"] > 0


@needs_root
def test_the_link_changes_live_down_and_up(pair: Pair) -> None:
    with impair_namespace(pair.client, Link(delay_ms=5), seed=8) as impairment:
        assert _echo(pair, 20, 0.01).rtts
        impairment.set_link(Link(delay_ms=5, up=False))
        down = _echo(pair, 20, 0.01, tail=0.3)
        impairment.set_link(Link(delay_ms=30))
        back = _echo(pair, 20, 0.01)
        counters = impairment.close()
    assert down.rtts == [] and down.received == 0
    assert counters["up"]["down_drops"] == 20
    assert 0.055 < statistics.median(back.rtts) < 0.09


@needs_root
async def test_a_real_tcp_download_shares_the_link_with_udp(pair: Pair) -> None:
    link = Link(delay_ms=10, rate_kbps=2000, queue_bytes=30_000)
    impairment = impair_namespace(pair.client, link, seed=9, tcp_ports=(5201,))
    try:
        idle = await asyncio.to_thread(_echo, pair, 50, 0.02)
        bulk = await TcpBulk(pair.server, pair.client, CLIENT, seconds=6.0).start()
        await asyncio.sleep(2.0)  # CUBIC takes the link
        busy = await asyncio.to_thread(_echo, pair, 100, 0.02)  # UDP replies: same queue
        result = await bulk.wait()
    finally:
        counters = impairment.close()
    print(
        f"\nTCP download over 2 Mbit/s: {result['kbps']:.0f} kbit/s; UDP RTT idle "
        f"{idle.median_ms:.0f} ms, beside the download {busy.median_ms:.0f} ms"
    )
    assert 0.8 * 2000 < result["kbps"] < 2000  # goodput: the link minus headers and slow start
    assert counters["down"]["sent"] > 6 * 2000 * 1000 / 8 / 1500 * 0.8  # it went through us
    # the echoes wait behind the download's packets in the shared queue
    assert busy.median_ms > idle.median_ms + 20
