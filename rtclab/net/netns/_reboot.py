"""A NAT router that reboots: its connection tracking (the kernel's NAT mappings) and the
cone sets of its nftables ruleset flushed, as a power cycle would leave them. TCP through
the router dies too (the peers' signaling websockets included), as it would."""

from __future__ import annotations

import contextlib
import sys

from ._system import run_async

__all__ = ["flush_nat"]

# ctnetlink IPCTNL_MSG_CT_DELETE without attributes deletes every entry of the namespace's
# conntrack table (what `conntrack -F` sends; the tool is not installed here).
_FLUSH = """
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
body = struct.pack("=BBH", socket.AF_INET, 0, 0)  # nfgenmsg: family, version, res_id
kind = (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE
s.send(struct.pack("=IHHII", 16 + len(body), kind, 0x1 | 0x4, 1, 0) + body)  # REQUEST|ACK
reply = s.recv(4096)
if struct.unpack_from("=H", reply, 4)[0] == 2:  # NLMSG_ERROR: 0 is the ACK
    error = -struct.unpack_from("=i", reply, 16)[0]
    if error:
        sys.exit(f"conntrack flush failed: errno {error}")
"""


async def flush_nat(router: str) -> None:
    """Flush ``router``'s NAT state (conntrack entries, cone sets)."""
    await run_async(["ip", "netns", "exec", router, sys.executable, "-c", _FLUSH], timeout=15)
    # only full-cone and restricted-cone routers have the set: elsewhere this fails, harmlessly
    with contextlib.suppress(RuntimeError):
        await run_async(["ip", "netns", "exec", router, "nft", "flush", "set", "ip", "rtclab",
                         "cone"], timeout=15)  # fmt: skip
