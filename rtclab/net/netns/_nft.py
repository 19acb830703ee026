"""The nftables ruleset of a namespace router, per NAT preset (pure text, no I/O).

Plain masquerade keeps the host's port (endpoint-independent mapping) and conntrack lets in
only replies (address-and-port-dependent filtering): ``port-restricted-cone``.
``random-fully`` gives every destination its own port: ``symmetric``. Conntrack alone cannot
filter more loosely, so ``full-cone`` and ``restricted-cone`` add what a cone NAT keeps:
dynamic nftables sets, filled by outgoing packets, of the ports mapped (full cone: anyone may
send to them) or of the (remote address, port) pairs contacted (restricted cone: any port of
an address we sent to), and a DNAT of matching new inbound packets back to the host.

A router also needs an INPUT drop of NEW packets from the WAN, or conntrack remaps the
host's ports and even cone NAT fails.
"""

from __future__ import annotations

from ..firewall import Firewall

__all__ = ["MAPPING_LIFETIME_S", "firewall_rules", "router_rules"]

MAPPING_LIFETIME_S = 120  # like conntrack's UDP stream timeout


def router_rules(preset: str, host_ip: str, lifetime_s: int = MAPPING_LIFETIME_S) -> str:
    """The nftables ruleset of a router with ``preset`` in front of ``host_ip``; a cone's
    remembered ports live ``lifetime_s`` idle seconds, like its conntrack entries."""
    masquerade = "masquerade fully-random" if preset == "symmetric" else "masquerade"
    sets = remember = admit = ""
    if preset in ("full-cone", "restricted-cone"):
        key = "inet_service" if preset == "full-cone" else "ipv4_addr . inet_service"
        element = "udp sport" if preset == "full-cone" else "ip daddr . udp sport"
        match = "udp dport" if preset == "full-cone" else "ip saddr . udp dport"
        sets = f"  set cone {{ type {key}; flags dynamic,timeout; timeout {lifetime_s}s; }}\n"
        # masquerade keeps the host's port (one host per router), so the host's source port
        # is the mapped port and the DNAT needs no port of its own
        remember = (
            f'    iifname "lan" oifname "wan" meta l4proto udp update @cone {{ {element} }}\n'
        )
        admit = (
            "  chain pre { type nat hook prerouting priority dstnat;\n"
            f'    iifname "wan" meta l4proto udp {match} @cone dnat to {host_ip}\n  }}\n'
        )
    post = f'type nat hook postrouting priority srcnat; oifname "wan" {masquerade};'
    return f"""
table ip rtclab {{
{sets}{admit}  chain post {{ {post} }}
  chain input {{ type filter hook input priority filter; iifname "wan" ct state new drop; }}
  chain forward {{
    type filter hook forward priority filter;
{remember}    iifname "wan" ct state new ct status dnat accept
    iifname "wan" ct state new drop
  }}
}}
"""


def firewall_rules(policy: Firewall, allow: tuple[str, int] | None = None) -> str:
    """The nftables ruleset of a host namespace behind ``policy``: what the policy lets the
    host open goes out, conntrack lets the replies in, everything else is dropped.

    ``allow`` is a TCP endpoint always let out: the lab's signaling server (its control
    plane, which a real deployment would serve on 443 too), so a blocked network still
    tells what ICE can do rather than failing before the offer.
    """
    opens = []
    if policy.udp:
        opens.append("meta l4proto udp accept")
    if policy.tcp_ports is None:
        opens.append("meta l4proto tcp accept")
    elif policy.tcp_ports:
        ports = ", ".join(str(p) for p in sorted(policy.tcp_ports))
        opens.append(f"tcp dport {{ {ports} }} accept")
    if allow is not None:
        opens.append(f"ip daddr {allow[0]} tcp dport {allow[1]} accept")
    rules = "".join(f"    {rule}\n" for rule in opens)
    return f"""
table inet rtclab_firewall {{
  chain output {{
    type filter hook output priority filter; policy drop;
    oifname "lo" accept
    ct state established,related accept
{rules}  }}
  chain input {{
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
  }}
}}
"""
