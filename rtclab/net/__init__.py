"""rtclab.net: networks for peers — emulated NATs and links (no root), Linux namespaces (root).

The emulated network runs anywhere Python does (Binder, a Jupyter kernel); the namespace
backend (:mod:`rtclab.net.netns`) builds the same topologies from real kernel NAT.
"""

from .base import NetworkAttachment
from .discovery import NatDiscovery, discover_nat
from .emulated import (
    EmulatedTransport,
    EmulationLeakError,
    Host,
    Nat,
    Network,
    attached_host,
    blocked_leaks,
)
from .link import Link, LinkState
from .nat import PRESETS, Filtering, Mapping, NatBehavior, NatTable, nat_behavior, predict_direct

__all__ = [
    "PRESETS",
    "EmulatedTransport",
    "EmulationLeakError",
    "Filtering",
    "Host",
    "Link",
    "LinkState",
    "Mapping",
    "Nat",
    "NatBehavior",
    "NatDiscovery",
    "NatTable",
    "Network",
    "NetworkAttachment",
    "attached_host",
    "blocked_leaks",
    "discover_nat",
    "nat_behavior",
    "predict_direct",
]
