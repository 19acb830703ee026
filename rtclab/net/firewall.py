"""Host firewalls as a pure policy: which packets a host may send and receive, no I/O.

The networks where TURN over TCP/TLS matters are the ones that block: a corporate LAN that
drops all UDP, or one that lets out only TCP to port 443 (what HTTPS needs). A
:class:`Firewall` says which flows a host may *open*; replies to a flow the host opened
are always let in (connection tracking), and nothing else is. :class:`FirewallTable` is the
tracking state of one host, like :class:`~rtclab.net.nat.NatTable` for a NAT: time passed
in, a verdict out. Presets combine with any NAT preset: the firewall sits on the host, the
NAT in front of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .nat import Address, named_preset

__all__ = [
    "FIREWALL_PRESETS",
    "ICE_PATHS",
    "Firewall",
    "FirewallTable",
    "IcePath",
    "Protocol",
    "firewall",
    "predict_paths",
]

Protocol = Literal["udp", "tcp"]
IcePath = Literal["host", "srflx", "relay-udp", "relay-tcp", "relay-tls"]
#: Every path a peer can take, the way a selected pair's local candidate names it.
ICE_PATHS: tuple[IcePath, ...] = ("host", "srflx", "relay-udp", "relay-tcp", "relay-tls")
#: TURN's default ports (RFC 8656 §3: 3478 for UDP and TCP, 5349 for TLS).
DEFAULT_TURN_PORTS: Mapping[str, int] = {"udp": 3478, "tcp": 3478, "tls": 5349}


@dataclass(frozen=True)
class Firewall:
    """Which flows a host may open: UDP at all, and TCP to which ports (``None``: any)."""

    name: str
    udp: bool = True
    tcp_ports: frozenset[int] | None = None

    def opens(self, protocol: Protocol, destination: Address) -> bool:
        """May the host open a ``protocol`` flow to ``destination``?"""
        if protocol == "udp":
            return self.udp
        return self.tcp_ports is None or destination[1] in self.tcp_ports


#: ``udp-blocked``: all UDP dropped, TCP out allowed. ``tcp-443-only``: only TCP to port 443
#: (HTTPS) leaves. Both let in the replies to what they let out, and nothing else.
FIREWALL_PRESETS: dict[str, Firewall] = {
    "udp-blocked": Firewall("udp-blocked", udp=False),
    "tcp-443-only": Firewall("tcp-443-only", udp=False, tcp_ports=frozenset({443})),
}


def firewall(preset: str | Firewall | None) -> Firewall | None:
    """A preset name (or a firewall, or None for none) -> firewall; a clear error otherwise."""
    if preset is None or isinstance(preset, Firewall):
        return preset
    return named_preset(FIREWALL_PRESETS, preset, "firewall")


def predict_paths(
    preset: str | Firewall | None, turn_ports: Mapping[str, int] | None = None
) -> dict[IcePath, bool]:
    """Which ICE paths of a peer behind ``preset`` survive, from the definitions alone.

    ``host`` and ``srflx`` pairs send UDP to the other peer's port, ``relay-udp`` sends UDP
    to the TURN server, ``relay-tcp`` and ``relay-tls`` open TCP to the TURN server's TCP and
    TLS ports (``turn_ports``, default 3478/3478/5349). The other peer is assumed unblocked;
    NAT traversal is :func:`~rtclab.net.nat.predict_direct`'s question, not this one.
    """
    wall = firewall(preset)
    ports = {**DEFAULT_TURN_PORTS, **(turn_ports or {})}
    if wall is None:
        return dict.fromkeys(ICE_PATHS, True)
    server = "0.0.0.0"  # only the port matters to these policies
    return {
        "host": wall.udp,
        "srflx": wall.udp,
        "relay-udp": wall.opens("udp", (server, ports["udp"])),
        "relay-tcp": wall.opens("tcp", (server, ports["tcp"])),
        "relay-tls": wall.opens("tcp", (server, ports["tls"])),
    }


class FirewallTable:
    """The connection tracking of one host behind ``policy``.

    :meth:`outbound` says whether a packet may leave (and remembers the flow if so);
    :meth:`inbound` whether one may arrive: only on a flow the host opened that has not
    been idle for ``idle_timeout_s`` (conntrack forgets idle flows too).
    """

    def __init__(self, policy: Firewall, *, idle_timeout_s: float = 120.0) -> None:
        self.policy = policy
        self.idle_timeout_s = idle_timeout_s
        self._flows: dict[tuple[Protocol, Address, Address], float] = {}
        self.dropped_outbound = 0
        self.dropped_inbound = 0

    @classmethod
    def of(cls, preset: str | Firewall | None) -> FirewallTable | None:
        """A table for ``preset`` (a name, a policy, or ``None``: no firewall, no table)."""
        policy = firewall(preset)
        return None if policy is None else cls(policy)

    def outbound(
        self, now: float, protocol: Protocol, source: Address, destination: Address
    ) -> bool:
        key = (protocol, source, destination)
        if key not in self._flows and not self.policy.opens(protocol, destination):
            self.dropped_outbound += 1
            return False
        self._flows[key] = now
        return True

    def inbound(
        self, now: float, protocol: Protocol, source: Address, destination: Address
    ) -> bool:
        """``source`` is the remote end, ``destination`` the host's own address."""
        key = (protocol, destination, source)
        seen = self._flows.get(key)
        if seen is None or now - seen > self.idle_timeout_s:
            self._flows.pop(key, None)
            self.dropped_inbound += 1
            return False
        self._flows[key] = now
        return True
