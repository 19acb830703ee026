"""Every read of aioice's private state, and the aioice functions rtclab replaces.

aiortc hands aioice one STUN and one TURN URL, gathers on every interface and keeps the
nominated pair to itself; aioice drops gathering errors without a word. rtclab changes
that through two things aioice looks up at every gather (:func:`replace_gathering_functions`):
the module global ``aioice.ice.get_host_addresses`` and the method
``Connection.get_component_candidates``, which rtclab's gathering replaces to query every
STUN and TURN server at once (:func:`bind_host_protocols`, :func:`add_connection_protocol`
and the ``original_*`` functions are its parts); it reads candidates and the nominated pair
from the ``aioice.Connection``. The TURN helpers work around two measured aioice delays.
Each access is read defensively (``None``/``[]``/no-op when it is not there) and listed by
:func:`rtclab._compat.probe`. Verified against aioice 0.13.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

__all__ = [
    "ComponentGatherer",
    "add_connection_protocol",
    "bind_host_protocols",
    "connection_protocols",
    "hold_early_channel_data",
    "nominated_pair",
    "on_error_received",
    "original_get_host_addresses",
    "original_relayed_candidate",
    "original_server_reflexive_candidate",
    "relay_only",
    "replace_gathering_functions",
    "stun_protocol_factory",
    "turn_client",
    "turn_prepermit",
]

log = logging.getLogger(__name__)

#: aioice's own functions, kept before any replacement: the hooks fall back to them.
original_get_host_addresses = aioice.ice.get_host_addresses
original_relayed_candidate = aioice.ice.relayed_candidate
original_server_reflexive_candidate = aioice.ice.server_reflexive_candidate
original_get_component_candidates = aioice.ice.Connection.get_component_candidates

#: ``(connection, component, addresses, timeout) -> candidates``, or ``None`` to let aioice
#: gather the component itself.
ComponentGatherer = Callable[[Any, int, list[str], float], Awaitable["list[Any] | None"]]


def replace_gathering_functions(
    get_host_addresses: Callable[..., Any], component_candidates: ComponentGatherer
) -> None:
    """Make aioice gather through these (idempotent): which interfaces
    (``aioice.ice.get_host_addresses``, a module global ``Connection.gather_candidates``
    looks up), and each component's candidates (``Connection.get_component_candidates``,
    replaced on the class; ``component_candidates`` returns ``None`` to leave a connection
    to aioice's own method)."""
    if aioice.ice.get_host_addresses is not get_host_addresses:
        aioice.ice.get_host_addresses = get_host_addresses
    current = aioice.ice.Connection.get_component_candidates
    if getattr(current, "rtclab_gatherer", None) is component_candidates:
        return

    async def get_component_candidates(
        self: Any, component: int, addresses: list[str], timeout: int = 5
    ) -> list[Any]:
        gathered = await component_candidates(self, component, addresses, timeout)
        if gathered is None:
            return await original_get_component_candidates(self, component, addresses, timeout)  # type: ignore[no-any-return]
        return gathered

    get_component_candidates.rtclab_gatherer = component_candidates  # type: ignore[attr-defined]
    aioice.ice.Connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]


async def bind_host_protocols(connection: Any, component: int, addresses: list[str]) -> list[Any]:
    """One UDP socket per address with its host candidate, added to the connection's
    protocols: the first half of aioice's ``get_component_candidates`` (a ``StunProtocol``
    per socket, ``local_candidate`` set, ``Connection._protocols``)."""
    loop = asyncio.get_running_loop()
    protocols = []
    for address in addresses:
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, 0)
            )
        except OSError as exc:
            log.info("could not bind to %s - %s", address, exc)
            continue
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        protocols.append(protocol)
    for protocol in protocols:
        add_connection_protocol(connection, protocol)
    return protocols


def stun_protocol_factory(connection: Any) -> Callable[[], Any]:
    """What aioice's ``relayed_candidate`` needs to build the relay's ``StunProtocol``."""
    return lambda: aioice.ice.StunProtocol(connection)


def add_connection_protocol(connection: Any, protocol: Any) -> None:
    """Let aioice pair and check ``protocol``'s candidate (``Connection._protocols``)."""
    protocols = getattr(connection, "_protocols", None)
    if isinstance(protocols, list) and protocol not in protocols:
        protocols.append(protocol)


def relay_only(connection: Any) -> bool:
    """The connection's ICE transport policy is ``relay`` (``Connection._transport_policy``)."""
    policy = getattr(connection, "_transport_policy", None)
    return policy is aioice.ice.TransportPolicy.RELAY


def nominated_pair(connection: Any, component: int = 1) -> Any | None:
    """The nominated ``aioice.CandidatePair`` of ``component`` (``Connection._nominated``), or
    None: set when the controlling side nominates a pair (both sides see it once the check
    completes); aiortc reports no candidate-pair stats, so this is the selected path."""
    nominated = getattr(connection, "_nominated", None)
    if not isinstance(nominated, dict):
        return None
    return nominated.get(component)


def connection_protocols(connection: Any) -> list[Any]:
    """Every ``StunProtocol`` of an ``aioice.Connection`` (``_protocols``: host sockets and
    TURN relays), where rtclab's relay tags sit; ``[]`` when not there."""
    return list(getattr(connection, "_protocols", None) or [])


def turn_client(protocol: Any) -> Any | None:
    """The TURN client protocol behind a relay's ``StunProtocol`` (its ``TurnTransport``'s
    ``__inner_protocol``), or None for a host socket: channel and permission bookkeeping
    live there."""
    return getattr(getattr(protocol, "transport", None), "_TurnTransport__inner_protocol", None)


def on_error_received(protocol: Any, callback: Callable[[Exception], None]) -> None:
    """Call ``callback(exc)`` before aioice's own ``protocol.error_received``.

    aioice hands a failed send on a relay (e.g. a 403 to ChannelBind) to
    ``StunProtocol.error_received``, which only logs at debug level.
    """
    original = protocol.error_received

    def error_received(exc: Exception) -> None:
        callback(exc)
        original(exc)

    protocol.error_received = error_received


async def turn_prepermit(protocol: Any, candidate: Any, connection: Any) -> None:
    """Create TURN permissions for the addresses a check may come from, before any check.

    Measured: relay-to-relay on one coturn took ~520 ms. The answerer's first check reaches
    the offerer's relay before the offerer has bound a channel to it; coturn forwards it as
    a Data indication, and aioice drops Data indications from any IP it has no channel for
    (its reading of RFC 8656 §11.4), so the check waits for the 500 ms STUN retransmit.

    A permission is per IP, so we create one (CreatePermission) for our own relay IP —
    peers on the same TURN server relay from it — and for every remote candidate address
    already known (an answerer knows the offer's ``connection.remote_candidates``), and
    record it in aioice's
    bookkeeping (``peer_to_channel`` keyed ``(ip, 0)``: a port no real peer has, so no send
    ever uses it) so that the Data indication is delivered. Private aioice state, read
    defensively: if it is not there this does nothing and only the retransmit is paid again.
    """
    inner = turn_client(protocol)
    table = getattr(inner, "peer_to_channel", None)
    if inner is None or not isinstance(table, dict):
        return
    version = ipaddress.ip_address(candidate.host).version
    addresses = {str(candidate.host)}
    for remote in getattr(connection, "remote_candidates", None) or []:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(remote.host).version == version:
                addresses.add(str(remote.host))

    async def permit(address: str) -> None:
        # aioice's codec keeps one value per attribute: one request per address
        message = stun.Message(
            message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
        )
        message.attributes["XOR-PEER-ADDRESS"] = (address, 0)
        await inner.request_with_retry(message)
        table.setdefault((address, 0), 0)

    results = await asyncio.gather(
        *(asyncio.wait_for(permit(a), 1.0) for a in sorted(addresses)), return_exceptions=True
    )
    for address, result in zip(sorted(addresses), results, strict=True):
        if isinstance(result, BaseException):  # best effort (see above)
            log.debug("TURN pre-permission for %s failed: %r", address, result)


def hold_early_channel_data(protocol: Any) -> None:
    """Do not drop ChannelData that overtakes aioice's own ChannelBind bookkeeping.

    Measured over TURN/TCP and TLS (1 run in 5): coturn sends the ChannelBind success and,
    right behind it in the same TCP segment, the remote's first check as ChannelData on
    that channel. aioice records the channel only when the coroutine awaiting the bind
    resumes, a loop iteration later; the ChannelData, parsed synchronously, finds no channel
    and is dropped — another 500 ms retransmit. While a bind is in flight we re-deliver an
    unknown channel's data a few ms later (for at most ~50 ms) instead, by replacing the
    TURN client's ``datagram_received`` (``channel_to_peer``, ``peer_connect_waiters``).
    """
    inner = turn_client(protocol)
    channels = getattr(inner, "channel_to_peer", None)
    binding = getattr(inner, "peer_connect_waiters", None)
    if inner is None or not isinstance(channels, dict) or not isinstance(binding, dict):
        return
    original = inner.datagram_received
    loop = asyncio.get_running_loop()

    def deliver(data: bytes, addr: Any, tries: int) -> None:
        if (
            len(data) >= 4
            and (data[0] & 0xC0) == 0x40  # ChannelData (RFC 8656 §12.4)
            and int.from_bytes(data[:2], "big") not in channels
            and binding
            and tries < 25
        ):
            loop.call_later(0.002, deliver, data, addr, tries + 1)
            return
        original(data, addr)

    def datagram_received(data: bytes, addr: Any) -> None:
        deliver(data, addr, 0)

    inner.datagram_received = datagram_received
