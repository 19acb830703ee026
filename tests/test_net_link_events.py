"""Links that change, with real aiortc peers on the emulated network: a Mahimahi trace under
overload, the link columns of the samples frame, and scheduled network events (link down,
NAT reboot, handover) that the peers notice and recover from."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import until

from rtclab import Lab
from rtclab.net import Link, Network
from rtclab.net.cross import ConstantRate, CrossTraffic
from rtclab.net.events import address_change, link_down, nat_reboot


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = Lab(name="links", stats_interval=0.5, spill_dir=tmp_path, preload_widgets=False)
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()


async def test_trace_link_under_overload_rate_and_queue_delay(lab: Lab, tmp_path: Path) -> None:
    # 1,200 kbit/s with uneven gaps: 10 opportunities of 1,500 B every 100 ms (Mahimahi
    # format: one line per opportunity, in milliseconds; the trace loops)
    trace = tmp_path / "uneven.trace"
    trace.write_text("".join(f"{ms}\n" for ms in (3, 5, 9, 20, 24, 41, 55, 60, 78, 100)))
    link = Link.from_mahimahi(trace, queue_bytes=30_000)
    mean_kbps = 10 * 1500 * 8 / 100
    with Network(seed=3) as net:
        ice = net.ice_config(stun=False)
        bob_host = net.host("bob", link=link)
        bob = await lab.peer("bob", room="t", ice=ice, network=bob_host, video=False, audio=False)
        await lab.peer("alice", room="t", ice=ice, network=net.host("alice"), audio=False,
                       width=160, height=120, fps=15)  # fmt: skip
        await lab.wait_connected(timeout=15)
        await bob.wait_connected(count=1)
        # overload bob's downlink: cross traffic at 1.5x the trace, plus alice's video
        cross = CrossTraffic(ConstantRate(rate_kbps=1.5 * mean_kbps), bob_host.down)
        await asyncio.sleep(3.0)  # the queue fills
        loop = asyncio.get_running_loop()
        t0, served0 = loop.time(), bob_host.down.served_bytes
        await asyncio.sleep(5.0)
        served_kbps = (bob_host.down.served_bytes - served0) * 8 / 1000 / (loop.time() - t0)
        cross.stop()
        samples = lab.samples
    print(f"\ntrace {mean_kbps:.0f} kbit/s: the link delivered {served_kbps:.0f} kbit/s")
    assert served_kbps == pytest.approx(mean_kbps, rel=0.05)

    inbound = samples[(samples["peer"] == "bob") & (samples["direction"] == "inbound")]
    late = inbound[inbound["elapsed_s"] > inbound["elapsed_s"].max() - 4.0]
    assert late["capacity_kbps"].median() == pytest.approx(mean_kbps, rel=0.05)
    full_ms = 30_000 * 8 / mean_kbps  # queue size / rate: 200 ms
    assert late["queue_delay_ms"].median() == pytest.approx(full_ms, rel=0.2)
    # and the media feel it: the RTCP round trip of alice's video grew by about that much
    video = samples[(samples["peer"] == "alice") & (samples["kind"] == "video")]
    rtts = video[video["elapsed_s"] > video["elapsed_s"].max() - 4.0]["rtcp_rtt_ms"].dropna()
    print(f"queue delay {late['queue_delay_ms'].median():.0f} ms, RTCP RTT {rtts.median():.0f} ms")
    assert statistics.median(rtts) == pytest.approx(full_ms, rel=0.25)
    # alice's uplink is not limited: her outbound rows say so
    out = samples[(samples["peer"] == "alice") & (samples["direction"] == "outbound")]
    assert out["capacity_kbps"].isna().all() and (out["queue_delay_ms"] == 0).all()


def _recovered(lab: Lab, event: str) -> bool:
    """Both directions of the one connection have a recovery time for ``event``."""
    rows = lab.recovery()
    rows = rows[rows["event"] == event]
    return len(rows) == 2 and bool(rows["recover_s"].notna().all())


async def test_link_down_and_nat_reboot_are_noticed_and_recovered(lab: Lab) -> None:
    with Network(seed=5) as net:
        ice = net.ice_config(connect_timeout=5.0)
        alice_host = net.host("alice", "port-restricted-cone")
        bob_host = net.host("bob", "port-restricted-cone")
        await lab.peer("bob", room="e", ice=ice, network=bob_host, audio=False,
                       width=160, height=120, fps=10)  # fmt: skip
        await lab.peer("alice", room="e", ice=ice, network=alice_host, audio=False,
                       width=160, height=120, fps=10)  # fmt: skip
        await lab.wait_connected(timeout=15)
        before = dict(bob_host.nat.table.mappings()[0]) if bob_host.nat else {}
        schedule = lab.network_events(
            net, [link_down("bob", at_s=1.0, duration_s=5.0), nat_reboot("bob", at_s=20.0)]
        )
        await schedule.wait()
        await until(lambda: _recovered(lab, "nat-reboot"), 12.0, "recovery from the reboot")
        events = lab.events
        mappings_after = bob_host.nat.table.mappings() if bob_host.nat else []
    network = events[events["peer"] == "network"]
    assert list(network["event"]) == ["link-down", "link-up", "nat-reboot"]
    assert list(network["remote"]) == ["bob"] * 3
    assert "mappings flushed" in network["value"].iloc[2]
    assert before and all(m["external"] != before["external"] for m in mappings_after)

    report = lab.recovery()
    print("\n" + report[["event", "peer", "remote", "notice_s", "recover_s"]].to_string())
    down = report[report["event"] == "link-down"]
    assert set(zip(down["peer"], down["remote"], strict=True)) == {
        ("alice", "bob"),
        ("bob", "alice"),
    }
    assert (down["notice_s"] <= 3.0).all(), "noticed within 3 s of the link going down"
    assert (down["recover_s"] <= 10.0).all(), "recovered within 10 s of the link's return"
    reboot = report[report["event"] == "nat-reboot"]
    assert reboot["notice_s"].notna().all() and (reboot["notice_s"] <= 3.0).all()
    assert (reboot["recover_s"] <= 10.0).all()


async def test_a_handover_moves_the_host_and_the_call_follows(lab: Lab) -> None:
    with Network(seed=6) as net:
        ice = net.ice_config(connect_timeout=5.0)
        phone = net.host("phone", "port-restricted-cone")
        await lab.peer("desk", room="h", ice=ice, network=net.host("desk"), audio=False,
                       width=160, height=120, fps=10)  # fmt: skip
        await lab.peer("phone", room="h", ice=ice, network=phone, audio=False,
                       width=160, height=120, fps=10)  # fmt: skip
        await lab.wait_connected(timeout=15)
        old = phone.address
        await lab.network_events(net, [address_change("phone", at_s=0.5)]).wait()
        await until(lambda: _recovered(lab, "address-change"), 10.0, "the call following")
        assert phone.address != old and phone.interfaces == (phone.address,)
        assert net.counters["address-gone"] > 0  # the old sockets went silent
        report = lab.recovery()
    assert len(report) == 2 and (report["notice_s"] <= 3.0).all()
    assert (report["recover_s"] <= 10.0).all()
    pairs = lab.events[lab.events["event"] == "selected-pair"]
    assert pairs["value"].iloc[-1] != pairs["value"].iloc[0]  # a new path, from the new address
