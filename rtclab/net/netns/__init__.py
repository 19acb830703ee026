"""The Linux-namespace backend: the same NAT topologies built from real kernel NAT (root only).

Every node is a network namespace: a *public* namespace with a bridge (coturn on two IPs
for STUN/RFC 5780 and TURN, and the signaling server), one *router* per NAT (veth to the
bridge, nftables masquerade; ``random-fully`` for symmetric) and one namespace per *host*
behind it. Peers run as subprocesses inside their host's namespace (``ip netns exec``) and
report back JSON on stdout. This kernel has no ``netem``: link impairment goes through
NFQUEUE in userspace (:mod:`rtclab.net.nfqueue`).

Modules: :mod:`.network` (topology and lifetime), :mod:`.peer` (a peer process seen from
the lab), :mod:`._nft` (router rulesets per preset), :mod:`._system` (``ip`` calls, stale
namespaces). ``python -m rtclab.net.netns cleanup`` removes namespaces left by a dead process.
"""

from ._system import NetnsUnavailable, cleanup_stale, require_netns
from .host import NetnsHost
from .network import NETNS_PRESETS, TURN_TLS_PORT, NetnsNetwork
from .peer import NetnsPeer

__all__ = [
    "NETNS_PRESETS",
    "TURN_TLS_PORT",
    "NetnsHost",
    "NetnsNetwork",
    "NetnsPeer",
    "NetnsUnavailable",
    "cleanup_stale",
    "require_netns",
]
