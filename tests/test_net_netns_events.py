"""Network events and changing links on the namespace backend (root): real aiortc peers in
namespaces behind kernel NAT, a link that goes down and comes back, a NAT router whose
conntrack table is flushed (a reboot), and the link columns of the namespace peers' rows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtclab import Lab
from rtclab.net import Link
from rtclab.net.events import link_down, nat_reboot
from rtclab.net.netns import NetnsNetwork, NetnsUnavailable, require_netns


def _available() -> str | None:
    try:
        require_netns()
    except NetnsUnavailable as exc:
        return str(exc)
    return None


def needs_root(test: Callable[..., Any]) -> Callable[..., Any]:
    skip = pytest.mark.skipif(_available() is not None, reason=str(_available()))
    return pytest.mark.netns(skip(test))


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
            await asyncio.sleep(12.0)
            samples, events, report = lab.samples, lab.events, lab.recovery()
            await alice.close()
            await bob.close()
    network = events[events["peer"] == "network"]
    assert list(network["event"]) == ["link-down", "link-up", "nat-reboot"]
    assert "conntrack flushed" in network["value"].iloc[2]
    print("\n" + report[["event", "peer", "remote", "notice_s", "recover_s"]].to_string())
    down = report[report["event"] == "link-down"]
    assert len(down) == 2 and (down["notice_s"] <= 3.0).all() and (down["recover_s"] <= 10).all()
    # the reboot drops every mapping: media both ways, noticed by both peers in time...
    reboot = report[report["event"] == "nat-reboot"]
    assert len(reboot) == 2 and (reboot["notice_s"] <= 3.0).all()
    # ...and bob's TCP signaling through the same NAT, which rtclab peers do not reconnect:
    # without it the connection cannot be renegotiated (emulated networks keep signaling
    # on loopback, so there the peers recover)
    after = events[(events["t"] > network["t"].iloc[2]) & (events["peer"] == "bob")]
    assert "signaling-closed" in set(after["event"])
    # bob's rows carry his NFQUEUE link: 1,500 kbit/s up and down (0 while it was down)
    rows = samples[(samples["peer"] == "bob") & samples["capacity_kbps"].notna()]
    assert set(rows["capacity_kbps"]) <= {1500.0, 0.0} and 1500.0 in set(rows["capacity_kbps"])
    assert samples[samples["peer"] == "alice"]["capacity_kbps"].isna().all()
