"""Network events and changing links on the namespace backend (root): real aiortc peers in
namespaces behind kernel NAT, a link that goes down and comes back, a NAT router whose
conntrack table is flushed (a reboot), and the link columns of the namespace peers' rows."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from helpers import until
from test_net_netns import needs_root

from rtclab import Lab
from rtclab.net import Link
from rtclab.net.events import link_down, nat_reboot
from rtclab.net.netns import NetnsNetwork


@needs_root
async def test_namespace_peers_notice_and_recover_from_link_down_and_nat_reboot() -> None:
    async with Lab(stats_interval=1.0) as lab:
        with NetnsNetwork() as net:
            link = Link(rate_kbps=1500, queue_ms=100)
            alice = await net.peer(net.host("alice", "port-restricted-cone"), lab=lab)
            bob_host = net.host("bob", "symmetric", link=link)
            bob = await net.peer(bob_host, lab=lab, fps=10)
            await alice.wait_connected(timeout=20)
            await bob.wait_connected(timeout=20)
            schedule = lab.network_events(
                net, [link_down("bob", at_s=1.0, duration_s=5.0), nat_reboot("bob", at_s=18.0)]
            )
            await schedule.wait()

            def recovered() -> bool:  # both directions, and bob's signaling is back
                rows = lab.recovery()
                rows = rows[rows["event"] == "nat-reboot"]
                if len(rows) != 2 or not rows["recover_s"].notna().all():
                    return False
                events = lab.events
                bob = events[(events["peer"] == "bob") & (events["t"] > rows["t"].min())]
                return "signaling-reconnected" in set(bob["event"])

            await until(recovered, 14.0, "recovery from the NAT reboot")
            samples, events, report = lab.samples, lab.events, lab.recovery()
            await alice.close()
            await bob.close()
    network = events[events["peer"] == "network"]
    assert list(network["event"]) == ["link-down", "link-up", "nat-reboot"]
    assert "conntrack flushed" in network["value"].iloc[2]
    print("\n" + report[["event", "peer", "remote", "notice_s", "recover_s"]].to_string())
    down = report[report["event"] == "link-down"]
    assert len(down) == 2 and (down["notice_s"] <= 3.0).all() and (down["recover_s"] <= 10).all()
    # the reboot drops every mapping: media both ways, noticed by both peers in time, and
    # bob's TCP signaling through the same NAT: he joins again and the link is rebuilt
    reboot = report[report["event"] == "nat-reboot"]
    assert len(reboot) == 2 and (reboot["notice_s"] <= 3.0).all()
    assert (reboot["recover_s"] <= 10).all()
    after = events[(events["t"] > network["t"].iloc[2]) & (events["peer"] == "bob")]
    mine = [e for e in after["event"] if e.startswith("signaling-") and e != "signaling-state"]
    # refused while the server still seats his old connection, until it fails its challenge
    assert mine[0] == "signaling-closed" and "signaling-reconnected" in mine, mine
    assert set(mine[1 : mine.index("signaling-reconnected")]) <= {"signaling-retry"}, mine
    # bob's rows carry his NFQUEUE link: 1,500 kbit/s up and down (0 while it was down)
    rows = samples[(samples["peer"] == "bob") & samples["capacity_kbps"].notna()]
    assert set(rows["capacity_kbps"]) <= {1500.0, 0.0} and 1500.0 in set(rows["capacity_kbps"])
    assert samples[samples["peer"] == "alice"]["capacity_kbps"].isna().all()


BLASTER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
target, kbps, seconds = (sys.argv[1], 9), float(sys.argv[2]), float(sys.argv[3])
gap, start, sent = 1228 * 8 / (kbps * 1000), time.monotonic(), 0
while (now := time.monotonic()) < start + seconds:
    if now >= start + sent * gap:
        s.sendto(bytes(1200), target)
        sent += 1
    else:
        time.sleep(min(gap, 0.002))
"""


@needs_root
async def test_a_trace_link_through_nfqueue_with_namespace_peers(tmp_path: Path) -> None:
    trace = tmp_path / "uneven.trace"  # 1,200 kbit/s: 10 opportunities every 100 ms
    trace.write_text("".join(f"{ms}\n" for ms in (3, 5, 9, 20, 24, 41, 55, 60, 78, 100)))
    link = Link.from_mahimahi(trace, queue_bytes=30_000)
    mean_kbps, full_ms = 1200.0, 30_000 * 8 / 1200.0
    async with Lab(stats_interval=1.0) as lab:
        with NetnsNetwork() as net:
            bob_host = net.host("bob", "open", link=link)
            alice = await net.peer(net.host("alice", "open"), lab=lab, fps=15)
            bob = await net.peer(bob_host, lab=lab, video=False)
            await alice.wait_connected(timeout=20)
            await bob.wait_connected(timeout=20)
            # overload bob's downlink: UDP from the public side at 1.5x, beside alice's video
            blaster = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", net.public, sys.executable, "-c", BLASTER,
                bob_host.address, str(1.5 * mean_kbps), "10",
            )  # fmt: skip
            await asyncio.sleep(3.0)
            impairment = bob_host.impairment
            assert impairment is not None
            first = impairment.status()
            await asyncio.sleep(6.0)
            last = impairment.status()
            await blaster.wait()
            samples = lab.samples
            await alice.close()
            await bob.close()
    served = last["down"]["served_bytes"] - first["down"]["served_bytes"]
    served_kbps = served * 8 / 1000 / (last["t"] - first["t"])
    print(f"\ntrace {mean_kbps:.0f} kbit/s through NFQUEUE: delivered {served_kbps:.0f} kbit/s")
    assert served_kbps == pytest.approx(mean_kbps, rel=0.05)
    inbound = samples[(samples["peer"] == "bob") & (samples["direction"] == "inbound")]
    late = inbound[inbound["elapsed_s"] > inbound["elapsed_s"].max() - 5.0]
    print(f"bob's rows: queue delay {late['queue_delay_ms'].median():.0f} ms")
    assert late["capacity_kbps"].median() == pytest.approx(mean_kbps, rel=0.05)
    assert late["queue_delay_ms"].median() == pytest.approx(full_ms, rel=0.2)
