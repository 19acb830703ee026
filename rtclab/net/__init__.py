"""rtclab.net: networks for peers — emulated NATs and links (no root), Linux namespaces (root).

The emulated network runs anywhere Python does (Binder, a Jupyter kernel); the namespace
backend (:mod:`rtclab.net.netns`) builds the same topologies from real kernel NAT.
"""

from .base import NetworkAttachment
from .cross import AimdFlow, ConstantRate, CrossTraffic, OnOff
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
from .events import NetworkEvent, NetworkSchedule, address_change, link_down, nat_reboot
from .firewall import FIREWALL_PRESETS, Firewall, FirewallTable, predict_paths
from .link import Link, LinkState
from .nat import PRESETS, Filtering, Mapping, NatBehavior, NatTable, nat_behavior, predict_direct

__all__ = [
    "FIREWALL_PRESETS",
    "PRESETS",
    "AimdFlow",
    "ConstantRate",
    "CrossTraffic",
    "EmulatedTransport",
    "EmulationLeakError",
    "Filtering",
    "Firewall",
    "FirewallTable",
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
    "NetworkEvent",
    "NetworkSchedule",
    "OnOff",
    "address_change",
    "attached_host",
    "blocked_leaks",
    "discover_nat",
    "link_down",
    "nat_behavior",
    "nat_reboot",
    "predict_direct",
    "predict_paths",
]
