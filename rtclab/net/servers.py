"""STUN (RFC 5389 + RFC 5780 CHANGE-REQUEST) and TURN (RFC 8656) servers, sans-I/O.

They speak aioice's STUN codec (``aioice.stun``), so what they send is what aioice parses.
Each ``handle(now, local, source, data, transport)`` returns the packets to send as
:class:`Datagram` ``(from, to, bytes, transport)``; the emulated network routes them (and
the Linux-namespace backend could put them on real sockets). Enough TURN for aioice and
browsers: long-term credentials, Allocate/Refresh/CreatePermission/ChannelBind, Send/Data
indications and ChannelData, the client reaching the server over UDP, TCP or TLS-over-TCP
(RFC 8656 §3.1; :class:`StreamSession` frames a stream per §12.5 and terminates TLS) while
the relayed side stays UDP. No TCP allocations (RFC 6062), no IPv6.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from aioice import stun

from .nat import Address

__all__ = ["Datagram", "StreamSession", "StunServer", "TurnServer"]


class Datagram(NamedTuple):
    """One packet a server sends: over UDP, or on the TCP/TLS connection ``src`` <-> ``dst``."""

    src: Address
    dst: Address
    data: bytes
    transport: str = "udp"  # udp | tcp (TLS is below the framing: see StreamSession)


CHANGE_IP = 0x4
CHANGE_PORT = 0x2


def _response(request: stun.Message, klass: stun.Class = stun.Class.RESPONSE) -> stun.Message:
    return stun.Message(
        message_method=request.message_method,
        message_class=klass,
        transaction_id=request.transaction_id,
    )


def _parse(data: bytes) -> stun.Message | None:
    try:
        return stun.parse_message(data)
    except ValueError:
        return None


class StunServer:
    """A STUN server on two IPs and two ports, as RFC 5780 NAT discovery needs.

    A Binding request gets XOR-MAPPED-ADDRESS (the requester's address as we see it),
    OTHER-ADDRESS (the alternate IP and port) and RESPONSE-ORIGIN; CHANGE-REQUEST makes the
    answer leave from the other IP and/or port — how a client learns its NAT's filtering.
    """

    def __init__(self, ip: str, alt_ip: str, port: int = 3478, alt_port: int = 3479) -> None:
        self.ips = (ip, alt_ip)
        self.ports = (port, alt_port)
        self.address: Address = (ip, port)
        self.requests = 0

    def handle(
        self, now: float, local: Address, source: Address, data: bytes, transport: str = "udp"
    ) -> list[Datagram]:
        message = _parse(data)
        if (
            transport != "udp"
            or message is None
            or message.message_method != stun.Method.BINDING
            or message.message_class != stun.Class.REQUEST
            or local[0] not in self.ips
            or local[1] not in self.ports
        ):
            return []
        self.requests += 1
        flags = int(message.attributes.get("CHANGE-REQUEST", 0))
        ip, port = local
        if flags & CHANGE_IP:
            ip = self.ips[1] if ip == self.ips[0] else self.ips[0]
        if flags & CHANGE_PORT:
            port = self.ports[1] if port == self.ports[0] else self.ports[0]
        response = _response(message)
        response.attributes["XOR-MAPPED-ADDRESS"] = source
        response.attributes["MAPPED-ADDRESS"] = source
        other_ip = self.ips[1] if local[0] == self.ips[0] else self.ips[0]
        other_port = self.ports[1] if local[1] == self.ports[0] else self.ports[0]
        response.attributes["OTHER-ADDRESS"] = (other_ip, other_port)
        response.attributes["RESPONSE-ORIGIN"] = (ip, port)
        return [Datagram((ip, port), source, bytes(response))]


@dataclass
class _Allocation:
    client: Address
    relay: Address
    username: str
    expires: float
    local: Address  # the server address the client reaches (where replies come from)
    transport: str = "udp"  # how the client reaches the server: udp | tcp
    permissions: dict[str, float] = field(default_factory=dict)  # peer IP -> expiry
    channels: dict[int, Address] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)


_Client = tuple[str, Address]  # (transport, 5-tuple source): one allocation each


class TurnServer:
    """A TURN server with long-term credentials, relaying over UDP from its own IP.

    Clients reach it over UDP and TCP on ``port`` and, once :meth:`enable_tls` has given it
    a certificate, over TLS on ``tls_ports`` (RFC 8656 §3.1: 3478 and 5349 by default; and
    443, where deployments put TURN/TLS for networks that let only HTTPS out).
    """

    PERMISSION_LIFETIME = 300.0

    def __init__(
        self,
        ip: str,
        port: int = 3478,
        *,
        users: dict[str, str] | None = None,
        realm: str = "rtclab.emulated",
        relay_ports: tuple[int, int] = (50000, 59999),
        max_lifetime: int = 3600,
        tls_ports: tuple[int, ...] = (5349, 443),
    ) -> None:
        self.address: Address = (ip, port)
        self.tls_address: Address = (ip, tls_ports[0])
        self.tls_addresses = frozenset((ip, p) for p in tls_ports)
        self.tls_context: ssl.SSLContext | None = None
        self.users = dict(users or {"rtclab": "rtclab"})
        self.realm = realm
        self._nonce = os.urandom(8).hex().encode()
        self._allocations: dict[_Client, _Allocation] = {}
        self._relays: dict[int, _Allocation] = {}
        self._next_port = relay_ports[0]
        self._ports = relay_ports
        self.max_lifetime = max_lifetime
        self.relayed_packets = 0

    @property
    def allocations(self) -> int:
        return len(self._allocations)

    def enable_tls(self, certfile: str, keyfile: str) -> None:
        """Accept TURN over TLS on ``tls_addresses`` with this certificate chain and key."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self.tls_context = context

    def listens(self, local: Address, transport: str) -> ssl.SSLContext | bool:
        """Whether a TCP connection to ``local`` is accepted: the TLS context for the TLS
        port, ``True`` for plain TCP, ``False`` (refused) otherwise."""
        if transport != "tcp":
            return local == self.address
        if local == self.address:
            return True
        if local in self.tls_addresses and self.tls_context is not None:
            return self.tls_context
        return False

    def open_stream(self, local: Address) -> StreamSession:
        """The framing (and TLS) state of a new TCP connection to ``local``."""
        context = self.listens(local, "tcp")
        return StreamSession(context if isinstance(context, ssl.SSLContext) else None)

    def stream_closed(self, client: Address) -> None:
        """The TCP/TLS connection from ``client`` is gone: so is its allocation (§3.1)."""
        allocation = self._allocations.pop(("tcp", client), None)
        if allocation is not None:
            self._relays.pop(allocation.relay[1], None)

    def _key(self, username: str) -> bytes | None:
        password = self.users.get(username)
        if password is None:
            return None
        return hashlib.md5(f"{username}:{self.realm}:{password}".encode()).digest()

    def _error(self, request: stun.Message, code: int, reason: str) -> stun.Message:
        error = _response(request, stun.Class.ERROR)
        error.attributes["ERROR-CODE"] = (code, reason)
        if code in (401, 438):
            error.attributes["REALM"] = self.realm
            error.attributes["NONCE"] = self._nonce
        return error

    def _alloc_port(self) -> int | None:
        low, high = self._ports
        for _ in range(high - low + 1):
            port = self._next_port
            self._next_port = low if port >= high else port + 1
            if port not in self._relays:
                return port
        return None

    def _expire(self, now: float) -> None:
        for client, allocation in list(self._allocations.items()):
            if allocation.expires < now:
                del self._allocations[client]
                self._relays.pop(allocation.relay[1], None)

    def handle(
        self, now: float, local: Address, source: Address, data: bytes, transport: str = "udp"
    ) -> list[Datagram]:
        """Packets to send for one datagram (UDP) or one framed message (TCP/TLS)."""
        if transport == "tcp" or local == self.address:
            if not self.listens(local, transport):
                return []
            return self._from_client(now, local, (transport, source), data)
        allocation = self._relays.get(local[1])
        if allocation is None or allocation.expires < now or local[0] != self.address[0]:
            return []
        return self._from_peer(now, allocation, source, data)

    def _to_client(self, allocation: _Allocation, payload: bytes) -> Datagram:
        return Datagram(allocation.local, allocation.client, payload, allocation.transport)

    def _from_peer(
        self, now: float, allocation: _Allocation, source: Address, data: bytes
    ) -> list[Datagram]:
        if allocation.permissions.get(source[0], -1.0) < now:
            return []  # RFC 8656 §9: no permission, silently dropped
        self.relayed_packets += 1
        channel = allocation.peer_channels.get(source)
        if channel is not None:
            return [self._to_client(allocation, struct.pack("!HH", channel, len(data)) + data)]
        indication = stun.Message(
            message_method=stun.Method.DATA, message_class=stun.Class.INDICATION
        )
        indication.attributes["XOR-PEER-ADDRESS"] = source
        indication.attributes["DATA"] = data
        return [self._to_client(allocation, bytes(indication))]

    def _from_client(
        self, now: float, local: Address, client: _Client, data: bytes
    ) -> list[Datagram]:
        transport, source = client

        def reply(message: stun.Message) -> list[Datagram]:
            return [Datagram(local, source, bytes(message), transport)]

        if len(data) >= 4 and (data[0] & 0xC0) == 0x40:  # ChannelData
            allocation = self._allocations.get(client)
            channel, length = struct.unpack("!HH", data[:4])
            if allocation is None or allocation.expires < now:
                return []
            peer = allocation.channels.get(channel)
            if peer is None or allocation.permissions.get(peer[0], -1.0) < now:
                return []
            self.relayed_packets += 1
            return [Datagram(allocation.relay, peer, data[4 : 4 + length])]
        message = _parse(data)
        if message is None:
            return []
        if message.message_class == stun.Class.INDICATION:
            return self._send_indication(now, client, message)
        if message.message_class != stun.Class.REQUEST:
            return []
        if message.message_method == stun.Method.BINDING:
            response = _response(message)
            response.attributes["XOR-MAPPED-ADDRESS"] = source
            return reply(response)
        # every other request needs long-term credentials (RFC 8489 §9.2)
        username = message.attributes.get("USERNAME")
        if username is None or "MESSAGE-INTEGRITY" not in message.attributes:
            return reply(self._error(message, 401, "Unauthorized"))
        key = self._key(str(username))
        if key is None or not message.check_message_integrity(key):
            return reply(self._error(message, 401, "Unauthorized"))
        if message.attributes.get("NONCE") != self._nonce:
            return reply(self._error(message, 438, "Stale Nonce"))
        self._expire(now)
        response = self._request(now, local, client, str(username), message)
        response.add_message_integrity(key)
        return reply(response)

    def _request(
        self, now: float, local: Address, client: _Client, username: str, message: stun.Message
    ) -> stun.Message:
        method = message.message_method
        allocation = self._allocations.get(client)
        if method == stun.Method.ALLOCATE:
            if allocation is not None:
                return self._error(message, 437, "Allocation Mismatch")
            if message.attributes.get("REQUESTED-TRANSPORT") != 0x11000000:
                return self._error(message, 442, "Unsupported Transport Protocol")
            port = self._alloc_port()
            if port is None:
                return self._error(message, 508, "Insufficient Capacity")
            lifetime = min(int(message.attributes.get("LIFETIME", 600)), self.max_lifetime)
            transport, source = client
            allocation = _Allocation(
                source, (self.address[0], port), username, now + lifetime, local, transport
            )
            self._allocations[client] = allocation
            self._relays[port] = allocation
            response = _response(message)
            response.attributes["XOR-RELAYED-ADDRESS"] = allocation.relay
            response.attributes["XOR-MAPPED-ADDRESS"] = source
            response.attributes["LIFETIME"] = lifetime
            return response
        if allocation is None:
            return self._error(message, 437, "Allocation Mismatch")
        if method == stun.Method.REFRESH:
            lifetime = min(int(message.attributes.get("LIFETIME", 600)), self.max_lifetime)
            if lifetime == 0:
                del self._allocations[client]
                self._relays.pop(allocation.relay[1], None)
            else:
                allocation.expires = now + lifetime
            response = _response(message)
            response.attributes["LIFETIME"] = lifetime
            return response
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        if peer is None:
            return self._error(message, 400, "Bad Request")
        if method == stun.Method.CREATE_PERMISSION:
            allocation.permissions[peer[0]] = now + self.PERMISSION_LIFETIME
            return _response(message)
        if method == stun.Method.CHANNEL_BIND:
            channel = message.attributes.get("CHANNEL-NUMBER")
            if not isinstance(channel, int) or not 0x4000 <= channel <= 0x4FFF:
                return self._error(message, 400, "Bad Request")
            bound = allocation.channels.get(channel)
            if (bound is not None and bound != peer) or allocation.peer_channels.get(
                peer, channel
            ) != channel:
                return self._error(message, 400, "Bad Request")
            allocation.channels[channel] = peer
            allocation.peer_channels[peer] = channel
            allocation.permissions[peer[0]] = now + self.PERMISSION_LIFETIME
            return _response(message)
        return self._error(message, 400, "Bad Request")

    def _send_indication(
        self, now: float, client: _Client, message: stun.Message
    ) -> list[Datagram]:
        allocation = self._allocations.get(client)
        if allocation is None or message.message_method != stun.Method.SEND:
            return []
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        data = message.attributes.get("DATA")
        if peer is None or data is None or allocation.permissions.get(peer[0], -1.0) < now:
            return []
        self.relayed_packets += 1
        return [Datagram(allocation.relay, peer, bytes(data))]


class StreamSession:
    """One TCP or TLS-over-TCP connection to a TURN server: bytes in, messages out.

    A stream carries STUN messages and ChannelData back to back, ChannelData padded to a
    multiple of 4 bytes (RFC 8656 §12.5); with TLS, an :class:`ssl.SSLObject` on memory
    BIOs terminates it — the same handshake a client has with coturn, no socket.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._buffer = b""
        self.failed: str | None = None  # why TLS ended: a handshake error, or "closed"
        self._tls: ssl.SSLObject | None = None
        if tls is not None:
            self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._tls = tls.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshaken = tls is None

    @property
    def tls(self) -> bool:
        return self._tls is not None

    def receive(self, data: bytes) -> tuple[list[bytes], bytes]:
        """(complete messages, bytes to send back now — TLS handshake records)."""
        if self._tls is None:
            return self._frames(data), b""
        if self.failed is not None:
            return [], b""
        self._incoming.write(data)
        plain = b""
        try:
            if not self._handshaken:
                self._tls.do_handshake()
                self._handshaken = True
            while chunk := self._tls.read(65536):
                plain += chunk
            # an empty read: the client's close_notify; answer with ours
            self.failed = "closed"
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self.failed = str(exc)
        return self._frames(plain), self._outgoing.read()

    def send(self, message: bytes) -> bytes:
        """The bytes that carry ``message`` on the stream (padded; encrypted with TLS)."""
        padded = message + bytes(stun.padding_length(len(message)))
        if self._tls is None:
            return padded
        self._tls.write(padded)
        return self._outgoing.read()

    def _frames(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= 4:
            length = struct.unpack("!H", self._buffer[2:4])[0]
            if (self._buffer[0] & 0xC0) == 0x40:  # ChannelData, padded on a stream
                full = 4 + length + stun.padding_length(length)
            else:
                full = 20 + length
            if len(self._buffer) < full:
                break
            out.append(self._buffer[:full])
            self._buffer = self._buffer[full:]
        return out
