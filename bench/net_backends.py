"""Our netlink code against the libraries that could replace it, side by side in one run.

1. NFQUEUE: packets per second through one queue with an immediate ACCEPT per packet, and
   the round-trip time of a UDP echo through it, for rtclab's standard-library client
   (:class:`rtclab.net.nfqueue.NfqueueSocket`: one ``send`` per verdict, and the worker's
   way, the verdicts of one burst in one ``send``) and for ``NetfilterQueue``
   (libnetfilter_queue through Cython). All run the same loop: an asyncio reader on the
   queue's socket.
2. Namespace setup: a host namespace on a bridge (namespace, ``lo`` up, a veth pair into it,
   an address) built with ``ip`` subprocesses (what :class:`NetnsNetwork` does) and with
   ``pyroute2``.

Root only; everything lives in namespaces named ``rtclab-bench-<pid>-*``, deleted at the end.
Needs ``pip install pyroute2 NetfilterQueue`` (the latter builds against
``libnetfilter-queue-dev``). Run: ``python bench/net_backends.py [--packets 60000]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PREFIX = f"rtclab-bench-{os.getpid()}-"
SERVER, CLIENT, PORT = "10.232.0.1", "10.232.0.2", 9000

WORKER = r"""
import asyncio, json, signal, sys
impl = sys.argv[1]
count = 0

async def main():
    global count
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if impl.startswith("rtclab"):
        from rtclab.net.nfqueue import NF_ACCEPT, NfqueueSocket
        sock = NfqueueSocket(0)
        batch = impl == "rtclab-batched"
        def readable():
            global count
            packets = sock.receive()
            if batch:  # what the impairing worker does: one send per burst
                sock.verdicts([(packet.packet_id, NF_ACCEPT) for packet in packets])
            else:
                for packet in packets:
                    sock.verdict(packet.packet_id, NF_ACCEPT)
            count += len(packets)
        fd = sock.fileno()
    else:
        from netfilterqueue import NetfilterQueue
        nfq = NetfilterQueue()
        size = 0
        def accept(packet):
            # the model needs the whole packet's size: NetfilterQueue reports only the copied
            # length, so read it from the IPv4 header (ours reads NFQA_CAP_LEN)
            global count
            nonlocal size
            size = int.from_bytes(packet.get_payload()[2:4], "big")
            packet.accept()
            count += 1
        nfq.bind(0, accept, max_len=4096, range=128)
        def readable():
            nfq.run(block=False)
        fd = nfq.get_fd()
        import os
        os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    print("ready", flush=True)
    await stop.wait()
    print(json.dumps({"verdicts": count}), flush=True)

asyncio.run(main())
"""

SINK = r"""
import json, signal, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
s.bind((sys.argv[1], int(sys.argv[2])))
n, first, last = 0, None, None
def stop(*_):
    print(json.dumps({"received": n, "seconds": (last - first) if n > 1 else 0}), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    if data[:1] == b"e":
        s.sendto(data, peer)
        continue
    last = time.monotonic()
    first = first or last
    n += 1
"""

BLAST = r"""
import json, socket, sys, time
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
payload = b"b" * size
for _ in range(count):
    s.send(payload)
s.settimeout(1.0)
rtts = []
for _ in range(300):
    t0 = time.monotonic()
    s.send(b"e" + b"\0" * 99)
    try:
        while s.recv(4096)[:1] != b"e":
            pass
    except TimeoutError:
        continue
    rtts.append(time.monotonic() - t0)
print(json.dumps({"rtt_ms": 1000 * sorted(rtts)[len(rtts) // 2] if rtts else None}))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def in_ns(ns: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]


def run_nfqueue(impl: str | None, packets: int, size: int) -> dict[str, float | None]:
    """One blast of ``packets`` UDP datagrams client -> server, through the queue or not."""
    srv, cli = PREFIX + "srv", PREFIX + "cli"
    sink = subprocess.Popen(in_ns(srv, sys.executable, "-c", SINK, SERVER, str(PORT)),
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    worker = None
    rule = ["OUTPUT", "!", "-o", "lo", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0"]
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        if impl is not None:
            worker = subprocess.Popen(in_ns(cli, sys.executable, "-c", WORKER, impl),
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
            subprocess.run(in_ns(cli, "iptables", "-w", "-A", *rule), check=True)
        blast = subprocess.run(
            in_ns(cli, sys.executable, "-c", BLAST, SERVER, str(PORT), str(packets), str(size)),
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        sink.terminate()
        got = json.loads(sink.communicate(timeout=10)[0])
        rtt = json.loads(blast.stdout)["rtt_ms"]
    finally:
        if worker is not None:
            subprocess.run(in_ns(cli, "iptables", "-w", "-D", *rule), capture_output=True)
            worker.terminate()
            worker.communicate(timeout=10)
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    rate = got["received"] / got["seconds"] if got["seconds"] else None
    return {"pps": rate, "delivered": got["received"] / packets, "rtt_ms": rtt}


def setup_ip(pub: str, ns: str, n: int, address: str) -> None:
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", pub, "link", "add", f"rv{n}", "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("-n", pub, "link", "set", f"rv{n}", "master", "br0", "up")
    ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")


_outer: dict[str, Any] = {}  # one netlink handle on the public namespace, kept open


def setup_pyroute2(pub: str, ns: str, n: int, address: str) -> None:
    from pyroute2 import NetNS, netns

    netns.create(ns)
    if pub not in _outer:
        _outer[pub] = NetNS(pub)
    outer = _outer[pub]
    outer.link("add", ifname=f"rv{n}", kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns})
    bridge = outer.link_lookup(ifname="br0")[0]
    outer.link("set", index=outer.link_lookup(ifname=f"rv{n}")[0], master=bridge, state="up")
    with NetNS(ns) as inner:
        inner.link("set", index=inner.link_lookup(ifname="lo")[0], state="up")
        eth0 = inner.link_lookup(ifname="eth0")[0]
        inner.addr("add", index=eth0, address=address, prefixlen=24)
        inner.link("set", index=eth0, state="up")


def time_setup(name: str, build: Callable[[str, str, int, str], None], hosts: int) -> float:
    """Mean milliseconds to build one host namespace on the bridge (the hosts are deleted)."""
    pub = PREFIX + "pub"
    made = []
    began = time.perf_counter()
    try:
        for n in range(hosts):
            ns = f"{PREFIX}{name}{n}"
            made.append(ns)
            build(pub, ns, n, f"10.233.{n // 250}.{n % 250 + 2}")
        elapsed = time.perf_counter() - began
        # the result must work: the last host sees the bridge
        subprocess.run(in_ns(made[-1], "ip", "-o", "addr", "show", "eth0"), check=True,
                       capture_output=True)  # fmt: skip
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return 1000 * elapsed / hosts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=60000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=20)
    args = parser.parse_args()
    srv, cli, pub = PREFIX + "srv", PREFIX + "cli", PREFIX + "pub"
    try:
        for ns in (srv, cli, pub):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", srv, "link", "add", "b0", "type", "veth", "peer", "name", "b1", "netns", cli)
        for ns, dev, address in ((srv, "b0", SERVER), (cli, "b1", CLIENT)):
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", pub, "link", "add", "br0", "type", "bridge")
        ip("-n", pub, "link", "set", "br0", "up")

        results: dict[str, list[dict[str, float | None]]] = {}
        for _ in range(args.rounds):  # interleaved, so a busy neighbour hits all alike
            for impl in (None, "rtclab", "rtclab-batched", "netfilterqueue"):
                key = impl or "no queue"
                results.setdefault(key, []).append(run_nfqueue(impl, args.packets, args.size))
        print(f"NFQUEUE, {args.packets} x {args.size} B UDP, median of {args.rounds} rounds")
        print(f"{'':16}{'packets/s':>12}{'delivered':>11}{'echo RTT ms':>13}")
        for key, runs in results.items():

            def med(field: str, runs: list[dict[str, float | None]] = runs) -> float:
                return statistics.median(float(r[field] or 0) for r in runs)

            print(f"{key:16}{med('pps'):12,.0f}{med('delivered'):11.1%}{med('rtt_ms'):13.3f}")

        began = time.perf_counter()
        import pyroute2  # noqa: F401

        print(f"\nimport pyroute2: {1000 * (time.perf_counter() - began):.0f} ms")
        setups: dict[str, list[float]] = {"ip": [], "pyroute2": []}
        for _ in range(args.rounds):
            setups["ip"].append(time_setup("i", setup_ip, args.hosts))
            setups["pyroute2"].append(time_setup("p", setup_pyroute2, args.hosts))
        print(f"host namespace on a bridge, {args.hosts} hosts, median of {args.rounds} rounds")
        for key, values in setups.items():
            print(f"{key:16}{statistics.median(values):8.1f} ms per host")
    finally:
        for handle in _outer.values():
            handle.close()
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith(PREFIX):
                subprocess.run(["ip", "netns", "del", line.split()[0]], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
