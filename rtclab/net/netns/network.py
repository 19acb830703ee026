"""The namespace network: a public namespace with a bridge, coturn and a signaling server;
per host a namespace, behind its own NAT router unless ``open``.

Names are ``rtclab-<pid>-<n>-<role>``. Nothing is added to the machine's own namespace:
deleting the namespaces (after killing what runs in them) removes every veth, bridge, rule
and process — on exit, on SIGTERM, and at the next start for namespaces whose creating
process is gone. The public namespace routes private destinations onto its bridge, where
they go nowhere: without a route coturn tears an allocation down when a peer's check goes
to a private address.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._proc import die_with_parent
from ...ice.certificates import TlsFiles, generate_certificate
from ..firewall import Firewall
from ..firewall import firewall as _firewall
from ..link import Link
from ..nfqueue import impair_namespace
from ._nft import MAPPING_LIFETIME_S, firewall_rules, router_rules
from ._system import (
    PREFIX,
    cleanup_stale,
    delete_namespace,
    require_netns,
    run,
    run_async,
)
from .host import NetnsHost
from .peer import NetnsPeer, PeerMedia, media_args

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11

__all__ = [
    "NETNS_PRESETS",
    "PUBLIC_NET",
    "SIGNALING_PORT",
    "STUN_IP",
    "TURN_TLS_PORT",
    "NetnsNetwork",
]

NETNS_PRESETS = ("open", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric")
PUBLIC_NET = "203.0.113"
STUN_IP, STUN_ALT_IP, SIGNALING_PORT = f"{PUBLIC_NET}.1", f"{PUBLIC_NET}.2", 8765
TURN_USER, TURN_PASSWORD = "rtclab", "rtclab"
#: coturn serves TURN over UDP and TCP on 3478 and over TLS on 443, where deployments put it
#: for networks that let out only HTTPS (``tcp-443-only``)
TURN_TLS_PORT = 443

_live: set[NetnsNetwork] = set()
_handlers_installed = False


def _cleanup_all() -> None:
    for network in list(_live):
        network.close()


def _install_handlers() -> None:
    """atexit always; SIGTERM/SIGHUP only if nobody else handles them (e.g. not in a kernel)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:

                def handler(num: int, frame: Any, previous: Any = signal.SIG_DFL) -> None:
                    _cleanup_all()
                    signal.signal(num, previous)
                    os.kill(os.getpid(), num)

                signal.signal(signum, handler)
        except ValueError:  # not the main thread
            pass


@dataclass
class NetnsNetwork:
    """Namespaces, veths, nftables NAT, coturn and a signaling server, removed on close.

    Use as a context manager. This kernel has no ``netem``: a host's ``link`` is applied in
    userspace through NFQUEUE (:mod:`rtclab.net.nfqueue`), ``rate_kbps`` alone by ``tbf``.
    """

    tag: str = field(default_factory=lambda: f"{os.getpid()}-{time.monotonic_ns() % 10**6}")
    hosts: dict[str, NetnsHost] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    peers: list[NetnsPeer] = field(default_factory=list)
    _free_ips: deque[int] = field(default_factory=lambda: deque(range(10, 255)))
    _workdir: Path | None = None
    _tls: TlsFiles | None = None
    _closed: bool = False

    def __hash__(self) -> int:
        return id(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def public(self) -> str:
        return f"{PREFIX}{self.tag}-pub"

    def _ns(self, role: str) -> str:
        name = f"{PREFIX}{self.tag}-{role}"
        run("ip", "netns", "add", name)
        self._namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def start(self) -> NetnsNetwork:
        require_netns()
        cleanup_stale()
        _install_handlers()
        _live.add(self)
        try:
            pub = self._ns("pub")
            run("ip", "-n", pub, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", pub, "link", "set", "br0", "up")
            for ip in (STUN_IP, STUN_ALT_IP):
                run("ip", "-n", pub, "addr", "add", f"{ip}/24", "dev", "br0")
            # private destinations go nowhere, quietly (coturn drops allocations on errors)
            run("ip", "-n", pub, "route", "add", "10.0.0.0/8", "dev", "br0")
            self._workdir = Path(tempfile.mkdtemp(prefix="rtclab-netns-"))
            self._start_coturn()
            self._start_signaling()
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, namespace: str, *command: str, log: str) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        out = open(self._workdir / log, "wb")
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
        self._processes.append(process)
        return process

    @property
    def ca_file(self) -> Path | None:
        """The CA that signed coturn's certificate (peers trust it for ``turns:``)."""
        return None if self._tls is None else self._tls.ca_file

    def _start_coturn(self) -> None:
        assert self._workdir is not None
        self._tls = generate_certificate(self._workdir, (STUN_IP,))
        conf = self._workdir / "turnserver.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listening-ip={STUN_IP}",
                    f"listening-ip={STUN_ALT_IP}",
                    f"relay-ip={STUN_IP}",
                    "listening-port=3478",
                    "alt-listening-port=3479",
                    "min-port=49152",
                    "max-port=49999",
                    "realm=rtclab",
                    "lt-cred-mech",
                    f"user={TURN_USER}:{TURN_PASSWORD}",
                    "fingerprint",
                    f"tls-listening-port={TURN_TLS_PORT}",
                    f"alt-tls-listening-port={TURN_TLS_PORT + 1}",
                    f"cert={self._tls.cert_file}",
                    f"pkey={self._tls.key_file}",
                    "no-tlsv1",
                    "no-tlsv1_1",
                    "no-dtls",
                    "no-cli",
                    "no-tcp-relay",
                    f"pidfile={self._workdir / 'turnserver.pid'}",
                    "log-file=stdout",
                    "simple-log",
                ]
            )
            + "\n"
        )
        self._spawn(self.public, "turnserver", "-c", str(conf), log="coturn.log")
        self._wait_listening(self.public, STUN_IP, 3478)
        self._wait_listening(self.public, STUN_IP, TURN_TLS_PORT, tcp=True)

    def _start_signaling(self) -> None:
        self._spawn(
            self.public, sys.executable, "-m", "rtclab.signaling", "--host", STUN_IP,
            "--port", str(SIGNALING_PORT), log="signaling.log",
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = run("ip", "netns", "exec", self.public, "ss", "-ltn", check=False)
            if f"{STUN_IP}:{SIGNALING_PORT}" in out:
                return
            time.sleep(0.1)
        raise RuntimeError("the signaling server did not start in the public namespace")

    def _wait_listening(self, namespace: str, ip: str, port: int, tcp: bool = False) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = run("ip", "netns", "exec", namespace, "ss", "-ltn" if tcp else "-lun",
                      check=False)  # fmt: skip
            if f"{ip}:{port}" in out:
                return
            time.sleep(0.1)
        raise RuntimeError(f"coturn did not listen on {ip}:{port} (see {self._workdir})")

    @property
    def signaling_url(self) -> str:
        return f"ws://{STUN_IP}:{SIGNALING_PORT}/signal"

    def ice_servers(
        self, *, turn: bool, transports: tuple[str, ...] = ("udp",), stun: bool = True
    ) -> list[dict[str, Any]]:
        """``RTCIceServer`` dicts: coturn's STUN, and its TURN over each of ``transports``
        (``udp``, ``tcp``, ``tls``; TLS needs :attr:`ca_file` trusted)."""
        servers: list[dict[str, Any]] = [{"urls": f"stun:{STUN_IP}:3478"}] if stun else []
        urls = {"udp": f"turn:{STUN_IP}:3478?transport=udp",
                "tcp": f"turn:{STUN_IP}:3478?transport=tcp",
                "tls": f"turns:{STUN_IP}:{TURN_TLS_PORT}?transport=tcp"}  # fmt: skip
        for transport in transports if turn else ():
            servers.append({"urls": urls[transport], "username": TURN_USER,
                            "credential": TURN_PASSWORD})  # fmt: skip
        return servers

    def _take_public_ip(self) -> str:
        """A free address on the public bridge (.1 and .2 are coturn's); freed on removal.

        Least recently freed first, and the public namespace forgets its old neighbour
        entry: otherwise coturn keeps answering a reused address at the MAC of a deleted
        veth for up to ~30 s (ARP), and the new host's STUN and TURN replies vanish.
        """
        if not self._free_ips:
            raise RuntimeError(
                f"no free public address left ({len(self.hosts)} hosts): remove_host() some"
            )
        address = f"{PUBLIC_NET}.{self._free_ips.popleft()}"
        run("ip", "-n", self.public, "neigh", "flush", "to", address, check=False)
        return address

    def remove_host(self, host: NetnsHost) -> None:
        """Delete ``host``'s namespaces (and its router's), its impairment and its peers."""
        for peer in [p for p in self.peers if p.host is host]:
            peer._kill()
            self.peers.remove(peer)
        if host.impairment is not None:
            with contextlib.suppress(Exception):
                host.impairment.close()
        for namespace in (host.namespace, host.router):
            if namespace is not None and namespace in self._namespaces:
                delete_namespace(namespace)
                self._namespaces.remove(namespace)
        if host.public_ip is not None:
            self._free_ips.append(int(host.public_ip.rsplit(".", 1)[1]))
        self.hosts.pop(host.name, None)

    def _veth_to_bridge(self, namespace: str, inside: str, address: str) -> None:
        n = next(self._counter)
        outer = f"rv{n}"
        run("ip", "-n", self.public, "link", "add", outer, "type", "veth", "peer", "name",
             inside, "netns", namespace)  # fmt: skip
        run("ip", "-n", self.public, "link", "set", outer, "master", "br0", "up")
        run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        run("ip", "-n", namespace, "link", "set", inside, "up")

    def host(
        self,
        name: str,
        preset: str,
        *,
        rate_kbps: float | None = None,
        link: Link | None = None,
        seed: int = 0,
        firewall: str | Firewall | None = None,
        mapping_lifetime_s: float | None = None,
    ) -> NetnsHost:
        """A host namespace behind its own router with ``preset`` (see :data:`NETNS_PRESETS`),
        and behind ``firewall`` (a preset such as ``"udp-blocked"``: nftables in the host's
        own namespace; the signaling server stays reachable). ``mapping_lifetime_s`` sets
        how long the router keeps an idle UDP mapping: its conntrack UDP timeouts (a
        per-namespace sysctl, whole seconds) and its cone sets; default 120 s (``stream``).

        ``link`` impairs the host's UDP both ways with the emulated network's model, applied
        in userspace through NFQUEUE (this kernel has no netem); ``rate_kbps`` alone uses
        the kernel's ``tbf`` on the router's WAN side.
        """
        if preset not in NETNS_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(NETNS_PRESETS)}")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        policy = _firewall(firewall)
        if mapping_lifetime_s is not None and preset == "open":
            raise ValueError("'open' has no NAT, so no mapping lifetime")
        lifetime = None if mapping_lifetime_s is None else max(1, math.ceil(mapping_lifetime_s))
        index = next(self._counter)  # never reused: names and subnets stay unique
        public_ip = self._take_public_ip()
        made = len(self._namespaces)
        try:
            if preset == "open":
                ns = self._ns(f"h{index}")
                self._veth_to_bridge(ns, "eth0", public_ip)
                host = NetnsHost(name, ns, public_ip, preset, public_ip=public_ip)
            else:
                router = self._ns(f"r{index}")
                ns = self._ns(f"h{index}")
                lan = f"10.{index // 250}.{index % 250}"
                self._veth_to_bridge(router, "wan", public_ip)
                run("ip", "-n", router, "link", "add", "lan", "type", "veth", "peer", "name",
                     "eth0", "netns", ns)  # fmt: skip
                run("ip", "-n", router, "addr", "add", f"{lan}.1/24", "dev", "lan")
                run("ip", "-n", router, "link", "set", "lan", "up")
                run("ip", "-n", ns, "addr", "add", f"{lan}.2/24", "dev", "eth0")
                run("ip", "-n", ns, "link", "set", "eth0", "up")
                run("ip", "-n", ns, "route", "add", "default", "via", f"{lan}.1")
                run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                if lifetime is not None:
                    run("ip", "netns", "exec", router, "sysctl", "-qw",
                        f"net.netfilter.nf_conntrack_udp_timeout={lifetime}",
                        f"net.netfilter.nf_conntrack_udp_timeout_stream={lifetime}")  # fmt: skip
                rules = router_rules(preset, f"{lan}.2", lifetime or MAPPING_LIFETIME_S)
                run("ip", "netns", "exec", router, "nft", "-f", "-", input=rules)
                host = NetnsHost(name, ns, f"{lan}.2", preset, router=router, public_ip=public_ip)
                if rate_kbps is not None:
                    run("ip", "netns", "exec", router, "tc", "qdisc", "add", "dev", "wan",
                         "root", "tbf", "rate", f"{int(rate_kbps)}kbit", "burst", "16kbit",
                         "latency", "200ms")  # fmt: skip
            if policy is not None:
                rules = firewall_rules(policy, allow=(STUN_IP, SIGNALING_PORT))
                run("ip", "netns", "exec", ns, "nft", "-f", "-", input=rules)
                host.firewall = policy.name
        except BaseException:
            for namespace in self._namespaces[made:]:
                delete_namespace(namespace)
            del self._namespaces[made:]
            self._free_ips.append(int(public_ip.rsplit(".", 1)[1]))
            raise
        if link is not None and not link.is_clean:
            host.impairment = impair_namespace(ns, link, seed=seed)
        self.hosts[name] = host
        return host

    async def discover(self, host: NetnsHost, timeout: float = 0.3) -> dict[str, Any]:
        """RFC 5780 probes from inside ``host``'s namespace against coturn (JSON result)."""
        code = (
            "import asyncio, json; from rtclab.net.discovery import discover_nat; "
            f"r = asyncio.run(discover_nat(('{STUN_IP}', 3478), timeout={timeout}, tries=2)); "
            "print(json.dumps(r.to_dict()))"
        )
        out = await run_async(host.exec_args(sys.executable, "-c", code), timeout=30)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    async def natdiscovery(self, host: NetnsHost) -> str:
        """coturn's own RFC 5780 tool (``turnutils_natdiscovery -m -f``), its text output."""
        return await run_async(
            host.exec_args("turnutils_natdiscovery", "-m", "-f", STUN_IP), timeout=60
        )

    async def peer(
        self,
        host: NetnsHost,
        name: str | None = None,
        *,
        room: str = "lab",
        lab: Any = None,
        turn: bool = True,
        stats_interval: float = 1.0,
        connect_timeout: float = 10.0,
        estimator: str | None = None,
        **media: Unpack[PeerMedia],
    ) -> NetnsPeer:
        """An aiortc peer running inside ``host``'s namespace (``rtclab peer``, its own
        process), gathering only on the host's address, through this network's signaling
        server, coturn and NAT. Its events and getStats rows stream back over its stdout
        into ``lab`` (a :class:`~rtclab.Lab` or a :class:`~rtclab.StatsCollector`), so they
        land in the same ``samples``/``events`` frames as the lab's own peers. ``estimator``
        names the bandwidth estimator for the video it receives, ``"MODULE:CLASS"`` (e.g.
        ``"rtclab.cc:LossBasedAimd"``), since a class does not cross into the process.
        ``media`` (:class:`~rtclab.net.netns.peer.PeerMedia`: ``video``, ``audio``, ``data``,
        ``width``, ``height``, ``fps``) means what it means for a :class:`~rtclab.Peer`,
        except that ``audio`` is off unless asked for."""
        name = host.name if name is None else name
        collector = getattr(lab, "collector", lab)
        command = [
            sys.executable, "-m", "rtclab", "peer", "--signal", self.signaling_url,
            "--name", name, "--room", room, "--interface", host.address,
            "--ice-servers", json.dumps(self.ice_servers(turn=turn)),
            "--connect-timeout", str(connect_timeout), "--stats-interval", str(stats_interval),
            *media_args(media),
        ]  # fmt: skip
        command += [] if estimator is None else ["--estimator", estimator]
        process = await asyncio.create_subprocess_exec(
            *host.exec_args(*command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),
        )
        peer = NetnsPeer(name, host, process, collector)
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for peer in self.peers:
            peer._kill()
        for host in self.hosts.values():
            if host.impairment is not None:
                with contextlib.suppress(Exception):
                    host.impairment.close()
        for process in self._processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                process.wait(5)
        for name in reversed(self._namespaces):
            delete_namespace(name)
        self._namespaces.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self) -> NetnsNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
