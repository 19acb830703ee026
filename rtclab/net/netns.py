"""The Linux-namespace backend: the same NAT topologies built from real kernel NAT (root only).

Every node is a network namespace named ``rtclab-<pid>-<n>-<role>``: a *public* namespace
with a bridge (coturn on two IPs for STUN/RFC 5780 and TURN, and the signaling server), one
*router* per NAT (veth to the bridge, nftables masquerade; ``random-fully`` for symmetric)
and one namespace per *host* behind it. Peers run as subprocesses inside their host's
namespace (``ip netns exec``) and report back JSON on stdout. Nothing is added to the
machine's own namespace: deleting the namespaces (after killing what runs in them) removes
every veth, bridge, rule and process — on exit, on SIGTERM, and at the next start for
namespaces whose creating process is gone.

Facts this kernel taught (see DESIGN.md): no ``netem`` (impairment would need NFQUEUE or a
userspace forwarder; only ``tbf`` rate limits are offered here); a router needs an INPUT drop
of NEW packets from the WAN or conntrack remaps the host's ports and even cone NAT fails; the
public namespace needs a route for private destinations or coturn tears the allocation down
when a peer's check goes to a private address.

Presets: plain masquerade keeps the host's port (endpoint-independent mapping) and conntrack
lets in only replies (address-and-port-dependent filtering): ``port-restricted-cone``.
``random-fully`` gives every destination its own port: ``symmetric``. Conntrack alone cannot
filter more loosely, so ``full-cone`` and ``restricted-cone`` add what a cone NAT keeps:
dynamic nftables sets, filled by outgoing packets, of the ports mapped (full cone: anyone may
send to them) or of the (remote address, port) pairs contacted (restricted cone: any port of
an address we sent to), and a DNAT of matching new inbound packets back to the host.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
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

if TYPE_CHECKING:
    from ..experiments.nat_matrix import NatScenario
    from .link import Link
    from .nfqueue import NamespaceImpairment

__all__ = [
    "NETNS_PRESETS",
    "NetnsHost",
    "NetnsNetwork",
    "NetnsPeer",
    "NetnsUnavailable",
    "cleanup_stale",
    "close_shared",
    "require_netns",
    "run_netns_scenario",
]

PREFIX = "rtclab-"
NETNS_PRESETS = ("open", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric")
MAPPING_LIFETIME_S = 120  # like conntrack's UDP stream timeout
PUBLIC_NET = "203.0.113"
STUN_IP, STUN_ALT_IP, SIGNALING_PORT = f"{PUBLIC_NET}.1", f"{PUBLIC_NET}.2", 8765
TURN_USER, TURN_PASSWORD = "rtclab", "rtclab"


class NetnsUnavailable(RuntimeError):
    """The namespace backend cannot run here; the message names what is missing."""


def require_netns() -> None:
    """Raise :class:`NetnsUnavailable` naming what is missing (root, ip, nft, turnserver)."""
    missing = []
    if not sys.platform.startswith("linux"):
        missing.append("Linux")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        missing.append("root (network namespaces need CAP_NET_ADMIN; run as root)")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` (Debian package {package})")
    if missing:
        raise NetnsUnavailable(
            "the Linux-namespace backend needs "
            + ", ".join(missing)
            + "; the emulated network (rtclab.net.Network) needs none of this"
        )


def _run(*args: str, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, input=input, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _namespaces() -> list[str]:
    out = _run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _delete_namespace(name: str) -> None:
    """Kill whatever runs in ``name`` (our own processes), then delete it."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to delete a namespace rtclab did not name: {name}")
    pids = _run("ip", "netns", "pids", name, check=False).split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
    _run("ip", "netns", "del", name, check=False)


def cleanup_stale() -> list[str]:
    """Delete ``rtclab-<pid>-*`` namespaces whose creating process no longer runs."""
    removed = []
    for name in _namespaces():
        if not name.startswith(PREFIX):
            continue
        parts = name.split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        if int(parts[1]) != os.getpid() and not Path(f"/proc/{parts[1]}").exists():
            _delete_namespace(name)
            removed.append(name)
    return removed


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
class NetnsHost:
    """A host namespace (behind ``router`` or on the public bridge)."""

    name: str
    namespace: str
    address: str
    preset: str
    router: str | None = None
    public_ip: str | None = None
    impairment: NamespaceImpairment | None = None

    def exec_args(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *command]


@dataclass
class NetnsNetwork:
    """Namespaces, veths, nftables NAT, coturn and a signaling server, removed on close.

    Use as a context manager. ``rate_kbps`` (per host, via ``tbf``) is the only link
    impairment this kernel offers without netem.
    """

    tag: str = field(default_factory=lambda: f"{os.getpid()}-{time.monotonic_ns() % 10**6}")
    hosts: dict[str, NetnsHost] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    peers: list[NetnsPeer] = field(default_factory=list)
    _free_ips: deque[int] = field(default_factory=lambda: deque(range(10, 255)))
    _workdir: Path | None = None
    _closed: bool = False

    def __hash__(self) -> int:
        return id(self)

    @property
    def public(self) -> str:
        return f"{PREFIX}{self.tag}-pub"

    def _ns(self, role: str) -> str:
        name = f"{PREFIX}{self.tag}-{role}"
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def start(self) -> NetnsNetwork:
        require_netns()
        cleanup_stale()
        _install_handlers()
        _live.add(self)
        try:
            pub = self._ns("pub")
            _run("ip", "-n", pub, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", pub, "link", "set", "br0", "up")
            for ip in (STUN_IP, STUN_ALT_IP):
                _run("ip", "-n", pub, "addr", "add", f"{ip}/24", "dev", "br0")
            # private destinations go nowhere, quietly (coturn drops allocations on errors)
            _run("ip", "-n", pub, "route", "add", "10.0.0.0/8", "dev", "br0")
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
            ["ip", "netns", "exec", namespace, *command], stdout=out, stderr=subprocess.STDOUT
        )
        self._processes.append(process)
        return process

    def _start_coturn(self) -> None:
        assert self._workdir is not None
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
                    "no-tls",
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
        self._wait_udp(self.public, STUN_IP, 3478)

    def _start_signaling(self) -> None:
        self._spawn(
            self.public, sys.executable, "-m", "rtclab.signaling", "--host", STUN_IP,
            "--port", str(SIGNALING_PORT), log="signaling.log",
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = _run("ip", "netns", "exec", self.public, "ss", "-ltn", check=False)
            if f"{STUN_IP}:{SIGNALING_PORT}" in out:
                return
            time.sleep(0.1)
        raise RuntimeError("the signaling server did not start in the public namespace")

    def _wait_udp(self, namespace: str, ip: str, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = _run("ip", "netns", "exec", namespace, "ss", "-lun", check=False)
            if f"{ip}:{port}" in out:
                return
            time.sleep(0.1)
        raise RuntimeError(f"coturn did not listen on {ip}:{port} (see {self._workdir})")

    @property
    def signaling_url(self) -> str:
        return f"ws://{STUN_IP}:{SIGNALING_PORT}/signal"

    def ice_servers(self, *, turn: bool) -> list[dict[str, Any]]:
        servers: list[dict[str, Any]] = [{"urls": f"stun:{STUN_IP}:3478"}]
        if turn:
            servers.append({"urls": f"turn:{STUN_IP}:3478?transport=udp",
                            "username": TURN_USER, "credential": TURN_PASSWORD})  # fmt: skip
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
        _run("ip", "-n", self.public, "neigh", "flush", "to", address, check=False)
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
                _delete_namespace(namespace)
                self._namespaces.remove(namespace)
        if host.public_ip is not None:
            self._free_ips.append(int(host.public_ip.rsplit(".", 1)[1]))
        self.hosts.pop(host.name, None)

    def _veth_to_bridge(self, namespace: str, inside: str, address: str) -> None:
        n = next(self._counter)
        outer = f"rv{n}"
        _run("ip", "-n", self.public, "link", "add", outer, "type", "veth", "peer", "name",
             inside, "netns", namespace)  # fmt: skip
        _run("ip", "-n", self.public, "link", "set", outer, "master", "br0", "up")
        _run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _run("ip", "-n", namespace, "link", "set", inside, "up")

    def host(
        self,
        name: str,
        preset: str,
        *,
        rate_kbps: float | None = None,
        link: Link | None = None,
        seed: int = 0,
    ) -> NetnsHost:
        """A host namespace behind its own router with ``preset`` (see :data:`NETNS_PRESETS`).

        ``link`` impairs the host's UDP both ways with the emulated network's model, applied
        in userspace through NFQUEUE (this kernel has no netem); ``rate_kbps`` alone uses
        the kernel's ``tbf`` on the router's WAN side.
        """
        if preset not in NETNS_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(NETNS_PRESETS)}")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
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
                _run("ip", "-n", router, "link", "add", "lan", "type", "veth", "peer", "name",
                     "eth0", "netns", ns)  # fmt: skip
                _run("ip", "-n", router, "addr", "add", f"{lan}.1/24", "dev", "lan")
                _run("ip", "-n", router, "link", "set", "lan", "up")
                _run("ip", "-n", ns, "addr", "add", f"{lan}.2/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", ns, "route", "add", "default", "via", f"{lan}.1")
                _run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                rules = _router_rules(preset, f"{lan}.2")
                _run("ip", "netns", "exec", router, "nft", "-f", "-", input=rules)
                host = NetnsHost(name, ns, f"{lan}.2", preset, router=router, public_ip=public_ip)
                if rate_kbps is not None:
                    _run("ip", "netns", "exec", router, "tc", "qdisc", "add", "dev", "wan",
                         "root", "tbf", "rate", f"{int(rate_kbps)}kbit", "burst", "16kbit",
                         "latency", "200ms")  # fmt: skip
        except BaseException:
            for namespace in self._namespaces[made:]:
                _delete_namespace(namespace)
            del self._namespaces[made:]
            self._free_ips.append(int(public_ip.rsplit(".", 1)[1]))
            raise
        if link is not None and not link.is_clean:
            from .nfqueue import impair_namespace

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
        out = await _exec(host.exec_args(sys.executable, "-c", code), timeout=30)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    async def natdiscovery(self, host: NetnsHost) -> str:
        """coturn's own RFC 5780 tool (``turnutils_natdiscovery -m -f``), its text output."""
        return await _exec(
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
        video: bool = True,
        audio: bool = False,
        data: bool = True,
        width: int = 320,
        height: int = 240,
        fps: float = 15.0,
    ) -> NetnsPeer:
        """An aiortc peer running inside ``host``'s namespace (``rtclab peer``, its own
        process), gathering only on the host's address, through this network's signaling
        server, coturn and NAT. Its events and getStats rows stream back over its stdout
        into ``lab`` (a :class:`~rtclab.Lab` or a :class:`~rtclab.StatsCollector`), so they
        land in the same ``samples``/``events`` frames as the lab's own peers."""
        name = host.name if name is None else name
        collector = getattr(lab, "collector", lab)
        command = [
            sys.executable, "-m", "rtclab", "peer", "--signal", self.signaling_url,
            "--name", name, "--room", room, "--interface", host.address,
            "--ice-servers", json.dumps(self.ice_servers(turn=turn)),
            "--connect-timeout", str(connect_timeout), "--stats-interval", str(stats_interval),
            "--width", str(width), "--height", str(height), "--fps", str(fps),
        ]  # fmt: skip
        command += [] if video else ["--no-video"]
        command += [] if audio else ["--no-audio"]
        command += [] if data else ["--no-data"]
        process = await asyncio.create_subprocess_exec(
            *host.exec_args(*command),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
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
            _delete_namespace(name)
        self._namespaces.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self) -> NetnsNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class NetnsPeer:
    """A peer process inside a namespace, seen from the lab: its events, its stats rows,
    whether it connected. Lines it prints are applied as they arrive (never blocking)."""

    def __init__(
        self, name: str, host: NetnsHost, process: asyncio.subprocess.Process, collector: Any
    ) -> None:
        self.name = name
        self.host = host
        self.process = process
        self.collector = collector
        self.events: list[dict[str, Any]] = []
        self.rows = 0
        self.connected: set[str] = set()
        self.failures: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    def __repr__(self) -> str:
        state = "running" if self.process.returncode is None else "exited"
        return f"<NetnsPeer {self.name} in {self.host.namespace} ({self.host.preset}) {state}>"

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "rows" in message:
                if self.collector is not None:
                    self.rows += len(self.collector.add_rows(message["rows"], peer=self.name))
            elif "event" in message:
                self._on_event(message)
            self._changed.set()
        self._changed.set()

    def _on_event(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        remote, event, value = message.get("remote"), message["event"], message.get("value")
        if event == "connected" and remote:
            self.connected.add(remote)
        elif event == "failed" and remote:
            self.failures[remote] = str(value)
        if self.collector is not None:
            self.collector.record_event(self.name, remote, event, value)

    async def wait_connected(self, count: int = 1, timeout: float = 15.0) -> None:
        """Until ``count`` remotes are connected; :class:`ConnectionError` names a failure
        (or the process's last words if it exited)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.connected) < count:
            if self.failures:
                remote, reason = next(iter(self.failures.items()))
                raise ConnectionError(f"{self.name} -> {remote} failed: {reason}")
            if self._reader.done():
                err = b""
                if self.process.stderr is not None:
                    err = await self.process.stderr.read()
                raise ConnectionError(f"{self.name} exited: {err.decode()[-800:]}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: {len(self.connected)} of {count} connected")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def close(self) -> None:
        """Leave (SIGTERM: the peer says goodbye to the room) and wait for the process."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except asyncio.TimeoutError:
                self._kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5)


def _router_rules(preset: str, host_ip: str) -> str:
    """The nftables ruleset of a router with ``preset`` in front of ``host_ip`` (see the
    module docstring for why cone NATs need sets and a DNAT on top of masquerade)."""
    masquerade = "masquerade fully-random" if preset == "symmetric" else "masquerade"
    sets = remember = admit = ""
    if preset in ("full-cone", "restricted-cone"):
        key = "inet_service" if preset == "full-cone" else "ipv4_addr . inet_service"
        element = "udp sport" if preset == "full-cone" else "ip daddr . udp sport"
        match = "udp dport" if preset == "full-cone" else "ip saddr . udp dport"
        sets = (
            f"  set cone {{ type {key}; flags dynamic,timeout; timeout {MAPPING_LIFETIME_S}s; }}\n"
        )
        # masquerade keeps the host's port (one host per router), so the host's source port
        # is the mapped port and the DNAT needs no port of its own
        remember = (
            f'    iifname "lan" oifname "wan" meta l4proto udp update @cone {{ {element} }}\n'
        )
        admit = (
            "  chain pre { type nat hook prerouting priority dstnat;\n"
            f'    iifname "wan" meta l4proto udp {match} @cone dnat to {host_ip}\n  }}\n'
        )
    post = f'type nat hook postrouting priority srcnat; oifname "wan" {masquerade};'
    return f"""
table ip rtclab {{
{sets}{admit}  chain post {{ {post} }}
  chain input {{ type filter hook input priority filter; iifname "wan" ct state new drop; }}
  chain forward {{
    type filter hook forward priority filter;
{remember}    iifname "wan" ct state new ct status dnat accept
    iifname "wan" ct state new drop
  }}
}}
"""


async def _exec(args: list[str], timeout: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[4:6])} failed: {err.decode()[-800:]}")
    return out.decode()


# --- peers inside namespaces -----------------------------------------------------------------


async def _peer_main(spec: dict[str, Any]) -> dict[str, Any]:
    """What ``python -m rtclab.net.netns peer SPEC`` runs inside a host namespace."""
    from .._compat.aiortc import sctp_rtt_ms
    from ..ice.config import IceConfig, IceServer
    from ..ice.inspect import selected_candidate_pair
    from ..peer.peer import Peer

    servers = tuple(IceServer(s["urls"], s.get("username"), s.get("credential"))
                    for s in spec["ice_servers"])  # fmt: skip
    ice = IceConfig(ice_servers=servers, interfaces=(spec["address"],),
                    connect_timeout=spec["connect_timeout"])  # fmt: skip
    peer = Peer(spec["name"], spec["signaling_url"], room=spec["room"], ice=ice,
                video=False, audio=False)  # fmt: skip
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
            pair = selected_candidate_pair(conn.pc)
            if pair is not None:
                row["local_candidate_type"] = pair.local_candidate_type
                row["remote_candidate_type"] = pair.remote_candidate_type
            deadline = time.monotonic() + spec["settle_seconds"] + 1.0
            while time.monotonic() < deadline:
                rtt = sctp_rtt_ms(conn.pc)
                row["rtt_ms"] = rtt
                if rtt is not None and time.monotonic() - began > spec["settle_seconds"]:
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(spec.get("linger", 0.0))
    finally:
        await peer.close()
    return row


_shared: NetnsNetwork | None = None


def _shared_network() -> NetnsNetwork:
    """One namespace network per process for matrix scenarios (built once, closed at exit)."""
    global _shared
    if _shared is None or _shared._closed:
        _shared = NetnsNetwork().start()
    return _shared


def close_shared() -> None:
    """Remove the matrix's shared namespace network (also done at exit)."""
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


async def run_netns_scenario(
    scenario: NatScenario, *, connect_timeout: float = 3.0, settle_seconds: float = 0.3
) -> dict[str, Any]:
    """One NAT-matrix scenario with both peers in namespaces -> the matrix's row."""
    from ..experiments.nat_matrix import _keys, _path

    net = _shared_network()
    index = next(net._counter)
    a = net.host(f"a{index}", scenario.a)
    b = net.host(f"b{index}", scenario.b)
    room = f"netns-{index}-{time.monotonic_ns()}"

    def spec(host: NetnsHost, linger: float) -> str:
        return json.dumps({
            "name": host.name, "address": host.address, "room": room,
            "signaling_url": net.signaling_url, "ice_servers": net.ice_servers(turn=scenario.turn),
            "connect_timeout": connect_timeout, "settle_seconds": settle_seconds,
            "linger": linger,
        })  # fmt: skip

    async def start(host: NetnsHost, linger: float) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *host.exec_args(sys.executable, "-m", "rtclab.net.netns", "peer",
                            spec(host, linger)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    row: dict[str, Any] = {**_keys(scenario), "connected": False}
    answerer = await start(b, linger=settle_seconds + 2.0)
    offerer: asyncio.subprocess.Process | None = None
    try:
        assert answerer.stdout is not None
        line = await asyncio.wait_for(answerer.stdout.readline(), 30)
        if b"joined" not in line:
            raise RuntimeError(f"the answerer did not join: {line!r}")
        offerer = await start(a, linger=0.0)
        out, err = await asyncio.wait_for(offerer.communicate(), connect_timeout + 30)
        lines = out.decode().strip().splitlines()
        if not lines:
            raise RuntimeError(f"the offerer reported nothing: {err.decode()[-500:]}")
        row.update(json.loads(lines[-1]))
    finally:
        for process in (answerer, offerer):
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        net.remove_host(a)  # a scenario's hosts go with it: addresses are reused
        net.remove_host(b)
    row["path"] = _path(row.get("local_candidate_type"), row.get("remote_candidate_type"))
    return row


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "peer":
        row = asyncio.run(_peer_main(json.loads(args[1])))
        print(json.dumps(row), flush=True)
        return 0
    if args == ["cleanup"]:
        for name in cleanup_stale():
            print("removed", name)
        return 0
    print("usage: python -m rtclab.net.netns peer SPEC_JSON | cleanup", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
