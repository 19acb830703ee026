"""ICE servers, transport policy and host interfaces -> aiortc/aioice configuration.

Lab defaults are deliberate: no STUN/TURN server (aiortc silently falls back to a Google
STUN server when ``iceServers`` is ``None``, so we always pass an explicit list) and host
candidates on loopback only (aioice skips 127.0.0.1 and gathers on every interface).

Several servers: aiortc hands aioice only the first STUN URL and the first TURN URL it can
use. A peer that gathers inside :func:`~rtclab.ice.gathering.gathering_on` (every
:class:`~rtclab.peer.Peer`) asks every STUN and TURN URL at once, as browsers do: one
server-reflexive candidate per STUN server (per distinct mapped address), one relay candidate
per live TURN URL, each labelled with its URL in the candidates frame.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

__all__ = [
    "LOOPBACK",
    "IceConfig",
    "IceServer",
    "IceTransportPolicy",
]

IceTransportPolicy = Literal["all", "relay"]

#: Host addresses a lab peer gathers on unless told otherwise.
LOOPBACK: tuple[str, ...] = ("127.0.0.1",)


@dataclass(frozen=True)
class IceServer:
    """One entry of ``RTCConfiguration.iceServers`` (W3C ``RTCIceServer``)."""

    urls: str | Sequence[str]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)  # not in logs or outputs

    @property
    def url_list(self) -> list[str]:
        return [self.urls] if isinstance(self.urls, str) else list(self.urls)

    def to_aiortc(self) -> RTCIceServer:
        urls = self.urls if isinstance(self.urls, str) else list(self.urls)
        return RTCIceServer(urls=urls, username=self.username, credential=self.credential)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape a browser hands to ``new RTCPeerConnection``."""
        out: dict[str, Any] = {"urls": self.urls if isinstance(self.urls, str) else list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class IceConfig:
    """How a peer finds paths: servers, policy, which interfaces to gather on, how long to try.

    ``interfaces`` lists host addresses to gather on; ``None`` means every interface
    (aioice's own behaviour, which also reaches the machine's non-loopback addresses).
    ``connect_timeout`` bounds how long a connection may take before it is declared
    ``failed`` with a reason (aiortc alone can stay in ``new`` forever).

    ``tls_ca_file`` is a PEM CA bundle trusted *instead of* the system's for ``turns:``
    (like ``curl --cacert``; aioice otherwise verifies against the system store only, and an
    untrusted certificate means no relay candidate). ``turn_timeout`` bounds each TURN/STUN
    server's answer (all are asked at once; aioice gives them 5 s together).
    ``gathering_grace``: once each kind of server candidate (srflx, relay) has its first
    answer, gathering waits this long for the other servers and then completes without
    them — a dead server delays nothing, and still gets its failure named at its timeout.
    ``turn_prepermit`` creates TURN permissions before the first check and keeps ChannelData
    that overtakes aioice's ChannelBind bookkeeping (see :mod:`rtclab.ice.gathering`):
    relay-to-relay connects in one round of checks (~35 ms on loopback) instead of after a
    500 ms retransmit.
    """

    ice_servers: tuple[IceServer, ...] = ()
    ice_transport_policy: IceTransportPolicy = "all"
    interfaces: tuple[str, ...] | None = LOOPBACK
    connect_timeout: float = 10.0
    tls_ca_file: str | None = None
    turn_timeout: float = 4.0
    gathering_grace: float = 0.2
    turn_prepermit: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.ice_transport_policy not in ("all", "relay"):
            raise ValueError(
                f"ice_transport_policy must be 'all' or 'relay', not {self.ice_transport_policy!r}"
            )
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive (seconds)")
        if self.turn_timeout <= 0:
            raise ValueError("turn_timeout must be positive (seconds)")
        if self.gathering_grace < 0:
            raise ValueError("gathering_grace must be >= 0 (seconds)")
        if not isinstance(self.ice_servers, tuple):
            object.__setattr__(self, "ice_servers", tuple(self.ice_servers))
        for server in self.ice_servers:
            for url in server.url_list:
                if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                    raise ValueError(f"not a STUN/TURN URL: {url!r}")
        if self.interfaces is not None:
            for address in self.interfaces:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    raise ValueError(
                        f"interfaces must be IP addresses, got {address!r} "
                        "(use e.g. ('127.0.0.1',), or None for every interface)"
                    ) from None

    def rtc_configuration(self) -> RTCConfiguration:
        """An aiortc configuration that never falls back to aiortc's default STUN server."""
        return RTCConfiguration(
            iceServers=[server.to_aiortc() for server in self.ice_servers],
            iceTransportPolicy=RTCIceTransportPolicy(self.ice_transport_policy),
        )

    @property
    def turn_urls(self) -> list[str]:
        """TURN URLs, in the order given (each live one gives a relay candidate)."""
        return [u for s in self.ice_servers for u in s.url_list if u.startswith("turn")]

    @property
    def stun_urls(self) -> list[str]:
        return [u for s in self.ice_servers for u in s.url_list if u.startswith("stun")]

    @property
    def has_turn(self) -> bool:
        return bool(self.turn_urls)

    def replace(self, **changes: Any) -> IceConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        import dataclasses

        return dataclasses.replace(self, **changes)
