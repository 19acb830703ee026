"""ICE servers, transport policy and host interfaces -> aiortc/aioice configuration.

Lab defaults are deliberate: no STUN/TURN server (aiortc silently falls back to a Google
STUN server when ``iceServers`` is ``None``, so we always pass an explicit list) and host
candidates on loopback only (aioice skips 127.0.0.1 and gathers on every interface).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

IceTransportPolicy = Literal["all", "relay"]

#: Host addresses a lab peer gathers on unless told otherwise.
LOOPBACK: tuple[str, ...] = ("127.0.0.1",)


@dataclass(frozen=True)
class IceServer:
    """One entry of ``RTCConfiguration.iceServers`` (W3C ``RTCIceServer``)."""

    urls: str | Sequence[str]
    username: str | None = None
    credential: str | None = None

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
    """

    ice_servers: tuple[IceServer, ...] = ()
    ice_transport_policy: IceTransportPolicy = "all"
    interfaces: tuple[str, ...] | None = LOOPBACK
    connect_timeout: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.ice_transport_policy not in ("all", "relay"):
            raise ValueError(
                f"ice_transport_policy must be 'all' or 'relay', not {self.ice_transport_policy!r}"
            )
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive (seconds)")
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


# --- host-address selection -------------------------------------------------------------
#
# aioice looks up the module global ``aioice.ice.get_host_addresses`` at every gather. We
# replace it once with a wrapper that consults a context variable: a peer sets the variable
# around setLocalDescription/setRemoteDescription (gathering runs in tasks that copy the
# context), so each connection gathers on its own interface set while code that never sets
# it keeps aioice's behaviour.

_interfaces: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "rtclab_ice_interfaces", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _interfaces.get()
    if chosen is None:
        return list(_original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    out = []
    for address in chosen:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def _install() -> None:
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def gathering_on(interfaces: Sequence[str] | None) -> Iterator[None]:
    """Within this block, ICE gathering started by this task uses only ``interfaces``."""
    _install()
    token = _interfaces.set(None if interfaces is None else tuple(interfaces))
    try:
        yield
    finally:
        _interfaces.reset(token)
