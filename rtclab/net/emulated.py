"""The emulated network: hosts on LANs behind NATs, impaired links, STUN and TURN servers on
a public side — all inside the Python process, no root, no real packet.

Two hook points bind aioice to it (docs/net.md): the host addresses a peer gathers on
(through :func:`rtclab.ice.gathering.gathering_on`) and ``create_datagram_endpoint`` /
``create_connection`` on the *running loop object* (:mod:`rtclab._compat.loop`), which
return an :class:`EmulatedTransport` (UDP) or a :class:`~rtclab.net.transports.StreamTransport`
(TCP, for TURN over TCP/TLS) when a host is attached to the current context (a contextvar,
copied into the tasks aioice spawns) and the real thing otherwise. Real sockets are guarded
too: a process audit hook refuses to bind, connect or send a real socket to any address of a
live emulated network (:class:`EmulationLeakError`), so an emulated packet cannot escape
even if a task loses its context.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import ipaddress
import itertools
import shutil
import sys
import tempfile
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .._compat.loop import route_sockets
from ..ice.config import IceConfig, IceServer
from . import firewall as _fw
from .link import Link, LinkState
from .nat import Address, NatBehavior, NatTable, nat_behavior
from .servers import Datagram, StunServer, TurnServer
from .transports import EmulatedTransport, StreamRouter

#: How a client reaches the emulated TURN server: ``udp``, ``tcp`` or ``tls`` (TLS over TCP).
TURN_TRANSPORTS: tuple[str, ...] = ("udp", "tcp", "tls")

__all__ = [
    "EmulatedTransport",
    "EmulationLeakError",
    "Host",
    "Nat",
    "Network",
    "attached_host",
    "blocked_leaks",
]


class EmulationLeakError(PermissionError):
    """A real socket was about to use an emulated address: refused (nothing was sent)."""


# --- the guard: real sockets never touch emulated addresses ---------------------------------

_GUARDED: dict[str, int] = {}  # emulated IP -> number of live networks using it
_guard_lock = threading.Lock()
_guard_installed = False
_SOCKET_EVENTS = frozenset({"socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg"})
_blocked: deque[tuple[str, str]] = deque(maxlen=1000)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _SOCKET_EVENTS or not _GUARDED:
        return
    address = args[1] if len(args) > 1 else None
    if isinstance(address, tuple) and address and address[0] in _GUARDED:
        _blocked.append((event, str(address[0])))
        raise EmulationLeakError(
            errno.EPERM,
            f"rtclab: refused {event} to emulated address {address[0]} on a real socket "
            "(attach the emulated host around this code, or use a real address)",
        )


def _install_guard() -> None:
    global _guard_installed
    with _guard_lock:
        if not _guard_installed:
            sys.addaudithook(_audit)  # permanent by design; a no-op when nothing is guarded
            _guard_installed = True


def blocked_leaks() -> list[tuple[str, str]]:
    """(event, address) of every real-socket use the guard refused (most recent 1000)."""
    return list(_blocked)


# --- attaching a context to a host ------------------------------------------------------------

_attached: contextvars.ContextVar[Host | None] = contextvars.ContextVar(
    "rtclab_net_host", default=None
)


def attached_host() -> Host | None:
    """The emulated host sockets opened in this context bind to (None: real sockets)."""
    return _attached.get()


def _patch_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Route ``create_datagram_endpoint`` and ``create_connection`` through the attached
    host, if any (per loop)."""
    route_sockets(loop, _open_on_attached_host)


async def _open_on_attached_host(method: str, arguments: dict[str, Any]) -> tuple[Any, Any] | None:
    """A UDP socket or TCP connection opened on the host attached to this context; None: a
    real one (the guard refuses emulated addresses)."""
    host = _attached.get()
    if host is None:
        return None
    if arguments.get("sock") is not None:
        raise OSError(errno.EPERM, f"emulated host {host.name}: cannot adopt a real socket")
    factory = arguments["protocol_factory"]
    if method == "create_connection":
        address, port = arguments.get("host"), arguments.get("port")
        return await host.network._streams.connect(host, factory, address, port, arguments)
    return host._open(factory, arguments.get("local_addr"), arguments.get("remote_addr"))


# --- topology ---------------------------------------------------------------------------------


class Nat:
    """A NAT router: one public IP, one LAN, one :class:`~rtclab.net.nat.NatTable`."""

    def __init__(
        self, network: Network, name: str, behavior: NatBehavior, public_ip: str, lan: str
    ) -> None:
        self.network = network
        self.name = name
        self.behavior = behavior
        self.public_ip = public_ip
        self.lan = ipaddress.ip_network(lan)
        self.table = NatTable(behavior, public_ip, seed=network._seed_for("nat", name))
        self._hosts = itertools.count(2)

    def mappings(self) -> list[dict[str, Any]]:
        return self.table.mappings(self.network._now())

    def __repr__(self) -> str:
        b = self.behavior
        return (
            f"<Nat {self.name} {self.public_ip} lan={self.lan} mapping={b.mapping.value} "
            f"filtering={b.filtering.value} hairpinning={b.hairpinning}>"
        )


class Host:
    """A machine on the emulated network; attach a peer to it with ``Peer(network=host)``.

    ``link`` is the host's access link, applied in both directions (uplink and downlink
    each get their own queue and random stream).
    """

    def __init__(
        self, network: Network, name: str, address: str, nat: Nat | None, link: Link
    ) -> None:
        self.network = network
        self.name = name
        self.address = address
        self.nat = nat
        self.link = link
        self.firewall: _fw.FirewallTable | None = None
        self.up = LinkState(link, network._seed_for("up", name))
        self.down = LinkState(link, network._seed_for("down", name))
        self._ports: dict[int, EmulatedTransport] = {}
        self._next_port = 40000 + network._seed_for_int("port", name) % 10000

    @property
    def interfaces(self) -> tuple[str, ...]:
        """What aioice gathers host candidates on: this host's one address."""
        return (self.address,)

    @contextlib.contextmanager
    def attach(self) -> Iterator[None]:
        """Within this block (and tasks started in it) UDP sockets and TCP connections open
        on this host."""
        _patch_loop(asyncio.get_running_loop())
        token = _attached.set(self)
        try:
            yield
        finally:
            _attached.reset(token)

    def set_link(self, link: Link) -> None:
        """Change the access link live: packets already on it keep their times, the queues,
        random streams and counters carry on, and a capacity schedule or trace starts now."""
        self.link = link
        now = None  # outside a loop: a schedule starts with the first packet
        with contextlib.suppress(RuntimeError):
            now = asyncio.get_running_loop().time()
        self.up.set_link(link, now)
        self.down.set_link(link, now)

    def _open(
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: Any,
        remote_addr: Any,
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        port = 0
        if local_addr is not None:
            ip, port = str(local_addr[0]), int(local_addr[1])
            if ip not in (self.address, "0.0.0.0"):
                raise OSError(errno.EADDRNOTAVAIL, f"emulated host {self.name} has no address {ip}")
        if port == 0:
            port = self._free_port()
        elif port in self._ports:
            raise OSError(errno.EADDRINUSE, f"{self.address}:{port} is in use")
        peer: Address | None = None
        if remote_addr is not None:
            ipaddress.ip_address(remote_addr[0])  # literals only: no DNS on this network
            peer = (str(remote_addr[0]), int(remote_addr[1]))
        protocol = protocol_factory()
        transport = EmulatedTransport(self, port, protocol, peer)
        self._ports[port] = transport
        self.network._loop = asyncio.get_running_loop()
        protocol.connection_made(transport)
        return transport, protocol

    def _free_port(self) -> int:
        for _ in range(20000):
            port = self._next_port
            self._next_port = 40000 if port >= 59999 else port + 1
            if port not in self._ports:
                return port
        raise OSError(errno.EADDRINUSE, f"emulated host {self.name}: no free port")

    def _deliver(self, port: int, data: bytes, source: Address) -> None:
        transport = self._ports.get(port)
        if transport is None or transport._address != self.address:
            self.network._count("no-socket")
            return
        self.network._count("delivered")
        transport._deliver(data, source)

    def __repr__(self) -> str:
        where = f"behind {self.nat.name}" if self.nat else "public"
        return f"<Host {self.name} {self.address} {where}>"


@dataclass(frozen=True)
class _Server:
    handler: StunServer | TurnServer


class Network:
    """An emulated internet: public servers, NAT routers with LANs, hosts with links.

    ``seed`` fixes every random choice (NAT ports, losses, jitter): the same seed and the
    same packets give the same outcome. Use it as a context manager (or call
    :meth:`close`) so that its addresses stop being guarded.

    Address plan: servers and open hosts in 203.0.113.0/24 (TEST-NET-3), NAT public IPs
    in 198.51.100.0/24 (TEST-NET-2), LAN *n* in 10.0.n.0/24 — none of them routed
    anywhere real, and the guard refuses them on real sockets while the network lives.
    """

    STUN_IP, STUN_ALT_IP, TURN_IP = "203.0.113.1", "203.0.113.2", "203.0.113.3"
    TURN_USER, TURN_PASSWORD = "rtclab", "rtclab"

    def __init__(self, seed: int = 0, *, capture: int = 0) -> None:
        self.seed = seed
        self.hosts: dict[str, Host] = {}
        self.nats: dict[str, Nat] = {}
        self._by_ip: dict[str, Host] = {}
        self._nat_by_ip: dict[str, Nat] = {}
        self.stun = StunServer(self.STUN_IP, self.STUN_ALT_IP)
        self.turn = TurnServer(self.TURN_IP, users={self.TURN_USER: self.TURN_PASSWORD})
        self._servers: dict[str, _Server] = {
            self.STUN_IP: _Server(self.stun),
            self.STUN_ALT_IP: _Server(self.stun),
            self.TURN_IP: _Server(self.turn),
        }
        self._public = itertools.count(10)
        self._nat_ips = itertools.count(1)
        self._lans = itertools.count(1)
        self.counters: Counter[str] = Counter()
        self.capture: deque[dict[str, Any]] | None = deque(maxlen=capture) if capture else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._streams = StreamRouter(self)
        self._tls_dir: str | None = None
        self._ca_file = ""
        _install_guard()
        self._guarded: list[str] = []
        for ip in self._servers:
            self._guard(ip)
        weakref.finalize(self, _unguard, self._guarded)

    # --- building ---------------------------------------------------------------------------

    def _seed_for(self, kind: str, name: str) -> str:
        return f"{self.seed}/{kind}/{name}"  # random.Random hashes str seeds deterministically

    def _seed_for_int(self, kind: str, name: str) -> int:
        import zlib

        return zlib.crc32(self._seed_for(kind, name).encode())

    def _guard(self, ip: str) -> None:
        with _guard_lock:
            _GUARDED[ip] = _GUARDED.get(ip, 0) + 1
        self._guarded.append(ip)

    def _unique(self, name: str) -> None:
        if name in self.hosts or name in self.nats:
            raise ValueError(f"name {name!r} is already used on this network")

    def nat(self, name: str, preset: str | NatBehavior, **changes: Any) -> Nat:
        """A NAT router with its own LAN; ``changes`` tweak the preset (e.g.
        ``hairpinning=False``, ``mapping_lifetime_s=30``)."""
        self._unique(name)
        behavior = nat_behavior(preset)
        if behavior is None:
            raise ValueError("'open' is no NAT: add the host with nat=None")
        if changes:
            behavior = behavior.replace(**changes)
        index = next(self._nat_ips)
        nat = Nat(self, name, behavior, f"198.51.100.{index}", f"10.0.{next(self._lans)}.0/24")
        self.nats[name] = nat
        self._nat_by_ip[nat.public_ip] = nat
        self._guard(nat.public_ip)
        return nat

    def host(
        self,
        name: str,
        nat: Nat | str | NatBehavior | None = None,
        *,
        link: Link | None = None,
        firewall: str | _fw.Firewall | None = None,
        **nat_changes: Any,
    ) -> Host:
        """A host: public (``nat=None``/``"open"``), behind an existing :class:`Nat` or its own
        (a preset name: ``<name>-nat``), and behind ``firewall`` (e.g. ``"udp-blocked"``)."""
        self._unique(name)
        router: Nat | None = None
        if isinstance(nat, Nat):
            router = nat
        elif nat is not None and nat != "open":
            router = self.nat(f"{name}-nat", nat, **nat_changes)
        if router is not None:
            address = str(router.lan.network_address + next(router._hosts))
        else:
            address = f"203.0.113.{next(self._public)}"
        host = Host(self, name, address, router, link or Link())
        host.firewall = _fw.FirewallTable.of(firewall)
        self.hosts[name] = host
        self._by_ip[address] = host
        self._guard(address)
        return host

    # --- servers ----------------------------------------------------------------------------

    @property
    def stun_url(self) -> str:
        return f"stun:{self.STUN_IP}:{self.stun.address[1]}"

    @property
    def stun_urls(self) -> list[str]:
        """Two STUN URLs (the server's two IPs): two server-reflexive candidates behind a
        NAT whose mapping depends on the destination address."""
        return [f"stun:{ip}:{self.stun.address[1]}" for ip in self.stun.ips]

    @property
    def turn_url(self) -> str:
        return self.turn_url_for("udp")

    def turn_url_for(self, transport: str = "udp", port: int | None = None) -> str:
        """The TURN URL reaching the emulated server over ``udp``, ``tcp`` or ``tls``
        (``turns:``, on port 5349 or ``port=443``; its certificate is issued by
        :attr:`ca_file`)."""
        ip = self.TURN_IP
        if transport in ("udp", "tcp"):
            return f"turn:{ip}:{port or self.turn.address[1]}?transport={transport}"
        if transport == "tls":
            self._enable_tls()
            return f"turns:{ip}:{port or self.turn.tls_address[1]}?transport=tcp"
        raise ValueError(f"TURN transport must be one of {TURN_TRANSPORTS}, not {transport!r}")

    @property
    def ca_file(self) -> str:
        """The PEM file of the CA that signed the TURN server's TLS certificate (made on
        first use, deleted at :meth:`close`): what ``IceConfig(tls_ca_file=...)`` trusts."""
        return self._enable_tls()

    def _enable_tls(self) -> str:
        if self._tls_dir is None:
            from ..ice.coturn import generate_certificate

            self._tls_dir = tempfile.mkdtemp(prefix="rtclab-net-tls-")
            weakref.finalize(self, shutil.rmtree, self._tls_dir, True)
            files = generate_certificate(self._tls_dir, hosts=(self.TURN_IP,))
            self.turn.enable_tls(str(files.cert_file), str(files.key_file))
            self._ca_file = str(files.ca_file)
        return self._ca_file

    def ice_servers(
        self, *, stun: bool = True, turn: bool | str | Sequence[str] = False
    ) -> tuple[IceServer, ...]:
        """``turn``: ``True`` for TURN over UDP, or the transports to list, one URL each
        (e.g. ``("tcp", "tls")``: what a network that drops UDP still lets through)."""
        servers: list[IceServer] = []
        if stun:
            servers.append(IceServer(self.stun_url))
        for transport in _turn_transports(turn):
            servers.append(
                IceServer(self.turn_url_for(transport), self.TURN_USER, self.TURN_PASSWORD)
            )
        return tuple(servers)

    def ice_config(
        self, *, stun: bool = True, turn: bool | str | Sequence[str] = False, **options: Any
    ) -> IceConfig:
        """An :class:`IceConfig` using this network's STUN/TURN servers (``turn`` as in
        :meth:`ice_servers`); with ``tls`` it trusts :attr:`ca_file`."""
        if "tls" in _turn_transports(turn):
            options.setdefault("tls_ca_file", self.ca_file)
        return IceConfig(ice_servers=self.ice_servers(stun=stun, turn=turn), **options)

    # --- packets ----------------------------------------------------------------------------

    def _loop_or_none(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _count(self, what: str) -> None:
        self.counters[what] += 1

    def _note(self, verdict: str, src: Address, dst: Address, size: int, via: str = "") -> None:
        self.counters[verdict] += 1
        if self.capture is not None:
            self.capture.append(
                {
                    "t": self._now(),
                    "verdict": verdict,
                    "src": f"{src[0]}:{src[1]}",
                    "dst": f"{dst[0]}:{dst[1]}",
                    "bytes": size,
                    "via": via,
                }
            )

    def _send(self, origin: Host, src: Address, dst: Address, data: bytes) -> None:
        if self._closed:
            return
        if src[0] != origin.address:  # the host moved on: this socket's address is gone
            self._note("address-gone", src, dst, len(data), origin.name)
            return
        loop = self._loop_or_none()
        self.counters["sent"] += 1
        if dst[0] == origin.address:
            loop.call_soon(origin._deliver, dst[1], data, src)
            return
        arrive = origin.up.admit(loop.time(), len(data) + 28)  # + IPv4/UDP headers
        if arrive is None:
            self._note("lost-uplink", src, dst, len(data), origin.name)
            return
        loop.call_at(arrive, self._route, origin, src, dst, data)

    def _route(self, origin: Host, src: Address, dst: Address, data: bytes) -> None:
        nat = origin.nat
        if nat is not None:
            target = self._by_ip.get(dst[0])
            if target is not None and target.nat is nat:  # same LAN: no translation
                self._downlink(target, src, dst, data)
                return
            external = nat.table.outbound(self._now(), src, dst)
            if external is None:
                self._note("nat-ports-exhausted", src, dst, len(data), nat.name)
                return
            if self.capture is not None:
                self._note("translated", src, external, len(data), nat.name)
            if dst[0] == nat.public_ip and not nat.behavior.hairpinning:
                self._note("hairpin-dropped", external, dst, len(data), nat.name)
                return
            src = external
        self._public_side(src, dst, data)

    def _public_side(self, src: Address, dst: Address, data: bytes) -> None:
        now = self._now()
        nat = self._nat_by_ip.get(dst[0])
        if nat is not None:
            inside = nat.table.inbound(now, src, dst)
            if inside is None:
                self._note("filtered", src, dst, len(data), nat.name)
                return
            host = self._by_ip.get(inside[0])
            if host is None:
                self._note("unroutable", src, inside, len(data))
                return
            self._downlink(host, src, inside, data)
            return
        server = self._servers.get(dst[0])
        if server is not None:
            self.dispatch(server.handler.handle(now, dst, src, data))
            return
        host = self._by_ip.get(dst[0])
        if host is not None and host.nat is None:
            self._downlink(host, src, dst, data)
            return
        # a private address seen from outside, or nobody: dropped, never to a real socket
        self._note("unroutable", src, dst, len(data))

    def dispatch(self, packets: Iterable[Datagram]) -> None:
        """Send what a server answered: UDP onto the public side, TCP down its connection."""
        loop = self._loop_or_none()
        for packet in packets:
            if packet.transport == "tcp":
                self._streams.send(packet)
            else:
                loop.call_soon(self._public_side, packet.src, packet.dst, packet.data)

    def _downlink(self, host: Host, src: Address, dst: Address, data: bytes) -> None:
        loop = self._loop_or_none()
        arrive = host.down.admit(loop.time(), len(data) + 28)
        if arrive is None:
            self._note("lost-downlink", src, dst, len(data), host.name)
            return
        loop.call_at(arrive, host._deliver, dst[1], data, src)

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop forwarding and stop guarding this network's addresses."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._streams.close_all()
        for host in self.hosts.values():
            for transport in list(host._ports.values()):
                if self._loop is not None and not self._loop.is_closed():
                    transport.close()
        _unguard(self._guarded)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def capture_frame(self) -> Any:
        """The captured packet events (``capture=N`` at creation) as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(
            list(self.capture or []), columns=["t", "verdict", "src", "dst", "bytes", "via"]
        )

    def __repr__(self) -> str:
        return f"<Network seed={self.seed} hosts={list(self.hosts)} nats={list(self.nats)}>"


def _turn_transports(turn: bool | str | Sequence[str]) -> tuple[str, ...]:
    if turn is True:
        return ("udp",)
    if not turn:
        return ()
    chosen = (turn,) if isinstance(turn, str) else tuple(turn)
    for transport in chosen:
        if transport not in TURN_TRANSPORTS:
            raise ValueError(f"TURN transport must be one of {TURN_TRANSPORTS}, not {transport!r}")
    return chosen


def _unguard(ips: list[str]) -> None:
    with _guard_lock:
        for ip in ips:
            count = _GUARDED.get(ip, 0) - 1
            if count <= 0:
                _GUARDED.pop(ip, None)
            else:
                _GUARDED[ip] = count
        ips.clear()
