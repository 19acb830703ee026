"""NAT behaviour per RFC 4787 as a pure state machine: packets in, translations out, no I/O.

Mapping (which external port a flow gets) and filtering (which inbound packets a mapping
admits) are each endpoint-independent, address-dependent or address-and-port-dependent;
mappings expire after ``mapping_lifetime_s`` idle seconds (refreshed by outbound traffic,
RFC 4787 REQ-6); hairpinning is on or off. Time is passed in, randomness comes from a
seeded :class:`random.Random`, so the same packets give the same translations every run.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

__all__ = [
    "PRESETS",
    "Address",
    "Filtering",
    "Mapping",
    "NatBehavior",
    "NatTable",
    "nat_behavior",
    "predict_direct",
]

Address = tuple[str, int]
_T = TypeVar("_T")


class Mapping(str, enum.Enum):
    """RFC 4787 §4.1: what decides whether two flows share an external port."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class Filtering(str, enum.Enum):
    """RFC 4787 §5: which outside senders may reach an existing mapping."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


@dataclass(frozen=True)
class NatBehavior:
    """One NAT's behaviour. The classic names ("full cone", ...) are :data:`PRESETS`."""

    mapping: Mapping
    filtering: Filtering
    hairpinning: bool = True
    mapping_lifetime_s: float = 120.0  # RFC 4787 REQ-5: at least 2 minutes
    port_preservation: bool = False
    inbound_refresh: bool = False
    port_range: tuple[int, int] = (49152, 65535)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mapping", Mapping(self.mapping))
        object.__setattr__(self, "filtering", Filtering(self.filtering))
        if self.mapping_lifetime_s <= 0:
            raise ValueError("mapping_lifetime_s must be positive")
        low, high = self.port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad port_range {self.port_range}")

    def replace(self, **changes: Any) -> NatBehavior:
        return replace(self, **changes)


_EIM, _ADM, _APDM = Mapping
_EIF, _ADF, _APDF = Filtering

#: The classic NAT names as RFC 4787 behaviours; ``open`` is no NAT at all (a public address).
PRESETS: dict[str, NatBehavior | None] = {
    "open": None,
    "full-cone": NatBehavior(_EIM, _EIF),
    "restricted-cone": NatBehavior(_EIM, _ADF),
    "port-restricted-cone": NatBehavior(_EIM, _APDF),
    "symmetric": NatBehavior(_APDM, _APDF),
}


def named_preset(presets: dict[str, _T], name: str, kind: str) -> _T:
    """``presets[name]``, or a :class:`ValueError` listing the choices (NAT, firewall)."""
    try:
        return presets[name]
    except KeyError:
        choices = sorted(presets)
        raise ValueError(f"unknown {kind} preset {name!r}; choose one of {choices}") from None


def nat_behavior(preset: str | NatBehavior | None) -> NatBehavior | None:
    """A preset name (or a behaviour, or None for open) -> behaviour; a clear error otherwise."""
    if preset is None or isinstance(preset, NatBehavior):
        return preset
    return named_preset(PRESETS, preset, "NAT")


def predict_direct(a: str | NatBehavior | None, b: str | NatBehavior | None) -> bool:
    """Can ICE connect two peers behind ``a`` and ``b`` without a relay (STUN only)?

    Peer X is reachable at its server-reflexive address by Y when X's mapping is
    endpoint-independent (the srflx is the port X uses towards Y too) and X's filter admits
    Y's packets once X has sent to Y's srflx: always for endpoint-independent or
    address-dependent filtering (same IP), and for address-and-port-dependent filtering only
    if Y's own mapping is endpoint-independent (same port). X answers to where Y's check
    came from, which Y's NAT admits since Y just sent there. One direction suffices.
    """

    def reachable(x: NatBehavior | None, y: NatBehavior | None) -> bool:
        if x is None:
            return True
        if x.mapping is not Mapping.ENDPOINT_INDEPENDENT:
            return False
        if x.filtering is not Filtering.ADDRESS_AND_PORT_DEPENDENT:
            return True
        return y is None or y.mapping is Mapping.ENDPOINT_INDEPENDENT

    na, nb = nat_behavior(a), nat_behavior(b)
    return reachable(na, nb) or reachable(nb, na)


@dataclass
class _Binding:
    internal: Address
    external_port: int
    key: tuple[Any, ...]
    last_used: float
    sent_to: set[Address] = field(default_factory=set)

    def admits(self, filtering: Filtering, source: Address) -> bool:
        if filtering is Filtering.ENDPOINT_INDEPENDENT:
            return True
        if filtering is Filtering.ADDRESS_DEPENDENT:
            return any(ip == source[0] for ip, _ in self.sent_to)
        return source in self.sent_to


class NatTable:
    """The translation state of one NAT with one public IP address.

    :meth:`outbound` translates an inside source to its external address (creating or
    reusing a mapping); :meth:`inbound` returns the inside address an outside packet is for,
    or ``None`` when no mapping exists or the filter drops it.
    """

    def __init__(
        self, behavior: NatBehavior, public_ip: str, *, seed: int | str | None = 0
    ) -> None:
        self.behavior = behavior
        self.public_ip = public_ip
        self._rng = random.Random(seed)
        self._by_key: dict[tuple[Any, ...], _Binding] = {}
        self._by_port: dict[int, _Binding] = {}
        self.created = 0
        self.expired = 0
        self.filtered = 0

    def _key(self, source: Address, destination: Address) -> tuple[Any, ...]:
        mapping = self.behavior.mapping
        if mapping is Mapping.ENDPOINT_INDEPENDENT:
            return (source,)
        if mapping is Mapping.ADDRESS_DEPENDENT:
            return (source, destination[0])
        return (source, destination)

    def _alive(self, binding: _Binding, now: float) -> bool:
        if now - binding.last_used <= self.behavior.mapping_lifetime_s:
            return True
        self._by_key.pop(binding.key, None)
        self._by_port.pop(binding.external_port, None)
        self.expired += 1
        return False

    def _free_port(self, wanted: int) -> int | None:
        low, high = self.behavior.port_range
        if self.behavior.port_preservation and low <= wanted <= high:
            if wanted not in self._by_port:
                return wanted
        for _ in range(64):
            port = self._rng.randint(low, high)
            if port not in self._by_port:
                return port
        free = [p for p in range(low, high + 1) if p not in self._by_port]
        return self._rng.choice(free) if free else None

    def outbound(self, now: float, source: Address, destination: Address) -> Address | None:
        """External (public) source address for a packet ``source -> destination``;
        ``None`` if the port pool is exhausted."""
        key = self._key(source, destination)
        binding = self._by_key.get(key)
        if binding is None or not self._alive(binding, now):
            port = self._free_port(source[1])
            if port is None:
                return None
            binding = _Binding(source, port, key, now)
            self._by_key[key] = binding
            self._by_port[port] = binding
            self.created += 1
        binding.last_used = now
        binding.sent_to.add(destination)
        return (self.public_ip, binding.external_port)

    def inbound(self, now: float, source: Address, destination: Address) -> Address | None:
        """Inside address for an outside packet ``source -> destination`` (our public
        address), or ``None`` when there is no live mapping or the filter drops it."""
        if destination[0] != self.public_ip:
            return None
        binding = self._by_port.get(destination[1])
        if binding is None or not self._alive(binding, now):
            return None
        if not binding.admits(self.behavior.filtering, source):
            self.filtered += 1
            return None
        if self.behavior.inbound_refresh:
            binding.last_used = now
        return binding.internal

    def flush(self) -> int:
        """Forget every mapping, as a NAT that reboots does; returns how many there were."""
        count = len(self._by_port)
        self._by_key.clear()
        self._by_port.clear()
        return count

    def mappings(self, now: float | None = None) -> list[dict[str, Any]]:
        """The live mappings as rows (for a table in a notebook)."""
        rows = []
        for binding in list(self._by_port.values()):
            if now is not None and not self._alive(binding, now):
                continue
            rows.append(
                {
                    "internal": f"{binding.internal[0]}:{binding.internal[1]}",
                    "external": f"{self.public_ip}:{binding.external_port}",
                    "destinations": len(binding.sent_to),
                    "idle_s": None if now is None else round(now - binding.last_used, 3),
                }
            )
        return rows
