"""Sockets on an emulated host: UDP (:class:`EmulatedTransport`) and TCP
(:class:`StreamTransport`, :class:`StreamRouter`) — how aioice's host candidates and its TURN
over UDP, TCP and TLS reach the emulated network.

TCP exists so that a peer whose UDP is blocked still has a path: TURN over TCP or TLS.
aioice opens TURN over TCP/TLS with ``loop.create_connection``; while a host is attached,
:func:`rtclab._compat.loop.route_sockets` sends that here. A connection is a
pair of byte streams between a host (through its NAT, on a TCP table of its own) and a
server that listens (only the TURN server does: a connection to anything else is refused).
Segments cross the host's access link like datagrams do, but in order and never lost: a
segment the link drops is sent again after a retransmission timeout, as TCP would. TLS is
real: the client side is asyncio's own ``start_tls`` over :class:`StreamTransport`, the
server side a :class:`~rtclab.net.servers.StreamSession` holding an ``ssl.SSLObject``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .._compat.loop import StartTlsTransport
from .link import LinkState
from .nat import Address, NatTable
from .servers import Datagram, StreamSession, TurnServer


class Network(Protocol):
    """What the transports use of :class:`rtclab.net.emulated.Network` (which imports this
    module, so the types are spelled out here instead of imported)."""

    counters: Counter[str]
    turn: TurnServer
    _servers: dict[str, Any]
    _closed: bool
    _loop: asyncio.AbstractEventLoop | None

    def _loop_or_none(self) -> asyncio.AbstractEventLoop: ...
    def _now(self) -> float: ...
    def _count(self, what: str) -> None: ...
    def _note(self, verdict: str, src: Address, dst: Address, size: int, via: str = "") -> None: ...
    def _seed_for(self, kind: str, name: str) -> str: ...
    def _seed_for_int(self, kind: str, name: str) -> int: ...
    def _enable_tls(self) -> str: ...
    def _send(self, origin: Any, src: Address, dst: Address, data: bytes) -> None: ...
    def dispatch(self, packets: Iterable[Datagram]) -> None: ...


class Host(Protocol):
    """What the transports use of :class:`rtclab.net.emulated.Host`."""

    name: str
    address: str
    nat: Any  # emulated.Nat: .name, .behavior, .public_ip
    firewall: Any  # firewall.FirewallTable or None
    up: LinkState
    down: LinkState
    _ports: dict[int, Any]

    @property
    def network(self) -> Network: ...


__all__ = ["EmulatedTransport", "StreamRouter", "StreamTransport"]

#: Linux's minimum TCP retransmission timeout: what a segment lost on a link costs.
RTO = 0.2
_HEADERS = 40  # IPv4 + TCP, for the link's rate model


class _Closing:
    """``close()`` once: the endpoint is forgotten, then its protocol hears
    ``connection_lost`` from the loop (as asyncio's own transports do; ``pc.close()`` waits
    for it). Nothing is ever buffered, so there is nothing to flush or abort."""

    _closing: bool
    _protocol: Any  # the subclass's protocol type

    def _forget(self) -> Network:
        raise NotImplementedError

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._forget()._loop_or_none().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


class EmulatedTransport(_Closing, asyncio.DatagramTransport):
    """A UDP socket on an emulated host: what aioice gets instead of a real one.

    ``get_extra_info("socket")`` is ``None`` (aioice then skips its socket options), close
    calls ``connection_lost`` (``pc.close()`` waits for it), and packets are delivered by
    loop callbacks, never from inside :meth:`sendto`.
    """

    def __init__(
        self,
        host: Host,
        port: int,
        protocol: asyncio.DatagramProtocol,
        peer: Address | None,
    ) -> None:
        super().__init__()
        self._host = host
        self._address = host.address  # a handover leaves this socket on the old address
        self._port = port
        self._protocol = protocol
        self._peer = peer
        self._closing = False

    @property
    def sockname(self) -> Address:
        return (self._address, self._port)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self.sockname
        if name == "peername":
            return self._peer if self._peer is not None else default
        if name == "socket":
            return None
        return default

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        target = addr if addr is not None else self._peer
        if target is None:
            raise ValueError("sendto needs an address on an unconnected transport")
        host, dst = self._host, (str(target[0]), int(target[1]))
        wall, network = host.firewall, host.network
        if wall and not wall.outbound(network._now(), "udp", self.sockname, dst):
            network._note("firewall-out", self.sockname, dst, len(data), host.name)
            return
        network._send(host, self.sockname, dst, bytes(data))

    def _deliver(self, data: bytes, source: Address) -> None:
        wall, network = self._host.firewall, self._host.network
        if wall and not wall.inbound(network._now(), "udp", source, self.sockname):
            network._note("firewall-in", source, self.sockname, len(data), self._host.name)
        elif not self._closing:
            self._protocol.datagram_received(data, source)

    def _forget(self) -> Network:
        self._host._ports.pop(self._port, None)
        return self._host.network

    def __repr__(self) -> str:
        return f"<EmulatedTransport {self.sockname[0]}:{self.sockname[1]}>"


@dataclass(eq=False)
class _Connection:
    host: Host
    local: Address  # on the host
    external: Address  # as the server sees it (after the NAT)
    server: Address
    session: StreamSession
    transport: StreamTransport | None = None
    up_last: float = 0.0
    down_last: float = 0.0
    closed: bool = False


class StreamTransport(_Closing, StartTlsTransport):
    """A TCP connection's end on an emulated host (``get_extra_info("socket")`` is None)."""

    def __init__(self, router: StreamRouter, conn: _Connection) -> None:
        super().__init__()
        self._router = router
        self._conn = conn
        self._protocol: asyncio.BaseProtocol = asyncio.Protocol()
        self._paused = False
        self._held: list[bytes] = []
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": self._conn.local, "peername": self._conn.server}.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing and data:
            self._router.upstream(self._conn, bytes(data))

    def is_reading(self) -> bool:
        return not self._paused

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        held, self._held = self._held, []
        for data in held:
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        if self._closing:
            return
        if self._paused:
            self._held.append(data)
            return
        protocol = self._protocol
        if isinstance(protocol, asyncio.BufferedProtocol):  # asyncio's TLS layer is one
            view = memoryview(data)
            while view:
                buffer = memoryview(protocol.get_buffer(len(view)))
                n = min(len(buffer), len(view))
                if n == 0:  # the protocol takes nothing more (e.g. TLS shut down)
                    break
                buffer[:n] = view[:n]
                protocol.buffer_updated(n)
                view = view[n:]
        elif isinstance(protocol, asyncio.Protocol):
            protocol.data_received(data)

    def _forget(self) -> Network:
        self._router.closed(self._conn)
        return self._router.network

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def __repr__(self) -> str:
        c = self._conn
        return f"<StreamTransport {c.local[0]}:{c.local[1]} -> {c.server[0]}:{c.server[1]}>"


class StreamRouter:
    """The TCP connections of one :class:`~rtclab.net.emulated.Network`."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self._by_ends: dict[tuple[Address, Address], _Connection] = {}  # (server, external)
        self._tables: dict[str, NatTable] = {}  # NAT name -> its TCP table
        self._ports: dict[str, int] = {}  # host name -> next local port

    def _nat_table(self, host: Host) -> NatTable | None:
        nat = host.nat
        if nat is None:
            return None
        table = self._tables.get(nat.name)
        if table is None:
            seed = self.network._seed_for("nat-tcp", nat.name)
            table = self._tables[nat.name] = NatTable(nat.behavior, nat.public_ip, seed=seed)
        return table

    async def connect(
        self,
        host: Host,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        address: Any,
        port: Any,
        options: dict[str, Any],
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """``loop.create_connection`` on ``host``: handshake, NAT, then TLS if asked."""
        ipaddress.ip_address(address)  # literals only: no DNS on this network
        server: Address = (str(address), int(port))
        network = self.network
        loop = asyncio.get_running_loop()
        network._loop = loop
        local = (host.address, self._next_port(host))
        if host.firewall and not host.firewall.outbound(network._now(), "tcp", local, server):
            # a dropped SYN: the caller's connect times out (here at once, not after retries)
            network._note("firewall-out", local, server, 0, host.name)
            raise TimeoutError(errno.ETIMEDOUT, f"{host.name}'s firewall dropped the SYN")
        # the SYN and SYN-ACK cross the access link (a lost one costs 1 s, as in Linux)
        await asyncio.sleep(self._crossing(host.up, 60, 1.0) + self._crossing(host.down, 60, 1.0))
        if network._closed:
            raise ConnectionResetError(errno.ECONNRESET, "the emulated network is closed")
        handler = network._servers.get(server[0])
        turn = handler.handler if handler is not None else None
        if turn is network.turn and server in network.turn.tls_addresses:
            network._enable_tls()  # its certificate is made on first use
        if not isinstance(turn, TurnServer) or not turn.listens(server, "tcp"):
            network._note("refused", local, server, 0, host.name)
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"emulated {server[0]}:{server[1]}: connection refused"
            )
        table = self._nat_table(host)
        external = local if table is None else table.outbound(network._now(), local, server)
        if external is None:
            network._note("nat-ports-exhausted", local, server, 0, host.name)
            raise OSError(errno.EADDRNOTAVAIL, f"NAT of {host.name}: no free TCP port")
        conn = _Connection(host, local, external, server, turn.open_stream(server))
        transport = conn.transport = StreamTransport(self, conn)
        self._by_ends[(server, external)] = conn
        network._count("tcp-connected")
        protocol = protocol_factory()
        context = options.get("ssl")
        if context:
            if not isinstance(context, ssl.SSLContext):
                context = ssl.create_default_context()  # ssl=True: the system's trust store
            hostname = options.get("server_hostname") or server[0]
            try:
                tls = await loop.start_tls(transport, protocol, context, server_hostname=hostname)
            except BaseException:
                transport.close()
                raise
            assert tls is not None
            protocol.connection_made(tls)
            return tls, protocol
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return transport, protocol

    def _next_port(self, host: Host) -> int:
        port = self._ports.get(
            host.name, 32768 + self.network._seed_for_int("tcp", host.name) % 7000
        )
        self._ports[host.name] = 32768 if port >= 39999 else port + 1
        return port

    def _crossing(self, link: LinkState, size: int, rto: float) -> float:
        """Seconds a segment takes across a link, retransmissions included."""
        now = self.network._now()
        waited = 0.0
        for _ in range(10):
            arrive = link.admit(now + waited, size)
            if arrive is not None:
                return max(0.0, arrive - now)
            waited += rto
        return waited

    def upstream(self, conn: _Connection, data: bytes) -> None:
        network = self.network
        if conn.closed or network._closed:
            return
        network.counters["tcp-sent"] += 1
        now = network._now()
        arrive = max(now + self._crossing(conn.host.up, len(data) + _HEADERS, RTO), conn.up_last)
        conn.up_last = arrive
        network._loop_or_none().call_at(arrive, self._at_server, conn, data)

    def _at_server(self, conn: _Connection, data: bytes) -> None:
        if conn.closed:
            return
        messages, reply = conn.session.receive(data)
        if reply:
            self._downstream(conn, reply)
        handler = self.network._servers[conn.server[0]].handler
        for message in messages:
            self.network.dispatch(
                handler.handle(self.network._now(), conn.server, conn.external, message, "tcp")
            )

    def send(self, datagram: Datagram) -> None:
        """A server's message to a client on a TCP connection (framed, encrypted)."""
        conn = self._by_ends.get((datagram.src, datagram.dst))
        if conn is None or conn.closed:
            self.network._note("no-connection", datagram.src, datagram.dst, len(datagram.data))
            return
        self._downstream(conn, conn.session.send(datagram.data))

    def _downstream(self, conn: _Connection, wire: bytes) -> None:
        network = self.network
        now = network._now()
        arrive = max(
            now + self._crossing(conn.host.down, len(wire) + _HEADERS, RTO), conn.down_last
        )
        conn.down_last = arrive
        transport = conn.transport
        if transport is not None:
            network._loop_or_none().call_at(arrive, transport._deliver, wire)

    def closed(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._by_ends.pop((conn.server, conn.external), None)
        handler = self.network._servers.get(conn.server[0])
        if handler is not None and isinstance(handler.handler, TurnServer):
            handler.handler.stream_closed(conn.external)

    def close_all(self) -> None:
        for conn in list(self._by_ends.values()):
            if conn.transport is not None:
                conn.transport.close()
