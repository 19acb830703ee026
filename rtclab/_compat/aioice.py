"""Every read of aioice's private state, and the aioice functions rtclab replaces.

aiortc hands aioice one STUN and one TURN URL, gathers on every interface and keeps the
nominated pair to itself; aioice drops gathering errors without a word. rtclab changes
that through three module globals aioice looks up at every gather
(:func:`replace_gathering_functions`) and reads candidates and the nominated pair from the
``aioice.Connection``. The TURN helpers work around two measured aioice delays. Each access
is read defensively (``None``/``[]``/no-op when it is not there) and listed by
:func:`rtclab._compat.probe`. Verified against aioice 0.13.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import aioice.ice
from aioice import stun

__all__ = [
    "connection_protocols",
    "hold_early_channel_data",
    "nominated_pair",
    "on_error_received",
    "original_get_host_addresses",
    "original_relayed_candidate",
    "original_server_reflexive_candidate",
    "replace_gathering_functions",
    "turn_client",
    "turn_prepermit",
]

log = logging.getLogger(__name__)

#: aioice's own functions, kept before any replacement: the hooks fall back to them.
original_get_host_addresses = aioice.ice.get_host_addresses
original_relayed_candidate = aioice.ice.relayed_candidate
original_server_reflexive_candidate = aioice.ice.server_reflexive_candidate


def replace_gathering_functions(
    get_host_addresses: Callable[..., Any],
    relayed_candidate: Callable[..., Any],
    server_reflexive_candidate: Callable[..., Any],
) -> None:
    """Make aioice gather through these (idempotent): which interfaces, and how STUN/TURN
    candidates are obtained. aioice's ``Connection`` looks the module globals
    ``aioice.ice.get_host_addresses`` / ``relayed_candidate`` / ``server_reflexive_candidate``
    up at every gather, so replacing them is enough; the replacements call the
    ``original_*`` functions when they have nothing to change."""
    if aioice.ice.get_host_addresses is not get_host_addresses:
        aioice.ice.get_host_addresses = get_host_addresses
    if aioice.ice.relayed_candidate is not relayed_candidate:
        aioice.ice.relayed_candidate = relayed_candidate
    if aioice.ice.server_reflexive_candidate is not server_reflexive_candidate:
        aioice.ice.server_reflexive_candidate = server_reflexive_candidate


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


async def turn_prepermit(protocol: Any, candidate: Any, made: Any) -> None:
    """Create TURN permissions for the addresses a check may come from, before any check.

    Measured: relay-to-relay on one coturn took ~520 ms. The answerer's first check reaches
    the offerer's relay before the offerer has bound a channel to it; coturn forwards it as
    a Data indication, and aioice drops Data indications from any IP it has no channel for
    (its reading of RFC 8656 §11.4), so the check waits for the 500 ms STUN retransmit.

    A permission is per IP, so we create one (CreatePermission) for our own relay IP —
    peers on the same TURN server relay from it — and for every remote candidate address
    already known (an answerer knows the offer's; ``made`` is the ``StunProtocol`` aioice
    created, whose ``receiver`` is the ``Connection``), and record it in aioice's
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
    connection = getattr(made, "receiver", None)
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
