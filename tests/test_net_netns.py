"""The Linux-namespace backend: kernel NAT seen by RFC 5780 probes, the matrix on real NAT,
and nothing left behind (root only; CI runs these as root)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
from typing import Any

import pytest
from helpers import needs_root

from rtclab.net import PRESETS, Network, discover_nat, netns
from rtclab.net.netns import NETNS_PRESETS, NetnsNetwork, NetnsUnavailable, require_netns
from rtclab.net.netns.peer import media_args


def _ours() -> list[str]:
    """Namespaces this test process made (others on the machine may run rtclab too)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mine = f"rtclab-{os.getpid()}-"
    return [line.split()[0] for line in out.splitlines() if line.startswith(mine)]


OUR_NETS = (ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("10.0.0.0/8"))


def _routes(namespace: str, family: str = "-4") -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", family, "-j", "-n", namespace, "route"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    routes: list[dict[str, Any]] = json.loads(out or "[]")
    return routes


def _addresses(namespace: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-4", "-j", "-n", namespace, "addr"], capture_output=True, text=True, check=True
    ).stdout
    return {a["local"] for link in json.loads(out) for a in link.get("addr_info", [])}


def _assert_routes_stay_inside(net: NetnsNetwork) -> None:
    """Every IPv4 route of every namespace leads into our own networks: a host's default
    route goes to its own router, and neither routers nor the public namespace have one."""
    gateways: set[str] = set()
    for host in net.hosts.values():
        if host.router is not None:
            (default,) = [r for r in _routes(host.namespace) if r["dst"] == "default"]
            assert default["gateway"] in _addresses(host.router), host
            gateways.add(default["gateway"])
    for namespace in net._namespaces:
        routes = _routes(namespace)
        assert routes, namespace
        for route in routes:
            if route["dst"] == "default":
                assert route["gateway"] in gateways, (namespace, route)
            else:
                prefix = ipaddress.ip_network(route["dst"])
                assert any(prefix.subnet_of(ours) for ours in OUR_NETS), (namespace, route)
        assert not [r for r in _routes(namespace, "-6") if r["dst"] == "default"], namespace


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def test_media_args_pass_only_what_differs_from_the_peer_command() -> None:
    """A namespace peer's media keywords become ``rtclab peer`` options; audio is off unless
    asked for, everything left out keeps the command's own default."""
    assert media_args({}) == ["--no-audio"]
    assert media_args({"audio": True, "video": False, "data": False, "fps": 10}) == [
        "--fps=10",
        "--no-video",
        "--no-data",
    ]
    sized = media_args({"width": 640, "height": 480})
    assert sized == ["--width=640", "--height=480", "--no-audio"]
    with pytest.raises(TypeError, match="vidoe"):
        media_args({"vidoe": False})  # type: ignore[typeddict-unknown-key]


def test_clear_error_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetnsUnavailable, match="root"):
        require_netns()


@needs_root
async def test_kernel_nat_probes_match_presets_and_coturn_agrees() -> None:
    """RFC 5780 probes see each preset's definition on kernel NAT, the same as emulated."""
    links_before = _root_links()
    with NetnsNetwork() as net:
        hosts = {p: net.host(p, p) for p in NETNS_PRESETS}
        seen = {p: await net.discover(h) for p, h in hosts.items()}
        tools = {p: await net.natdiscovery(hosts[p]) for p in ("full-cone", "restricted-cone")}
        tools["symmetric"] = await net.natdiscovery(hosts["symmetric"])
        with pytest.raises(ValueError, match="unknown preset"):
            net.host("x", "cone-ish")
        # no namespace of ours routes anywhere but to our own bridge and routers
        _assert_routes_stay_inside(net)
        names = list(net._namespaces)
    assert set(NETNS_PRESETS) == set(PRESETS)  # every preset exists in both backends
    for preset, found in seen.items():
        behavior = PRESETS[preset]
        mapping = behavior.mapping.value if behavior else "endpoint-independent"
        filtering = behavior.filtering.value if behavior else "endpoint-independent"
        assert (found["mapping"], found["filtering"]) == (mapping, filtering), preset
        if behavior is not None:  # behind a NAT: the mapped address is the router's
            assert found["mapped"][0] == hosts[preset].public_ip
        emulated = await _emulated_discovery(preset)
        assert (found["mapping"], found["filtering"]) == emulated, preset
    assert "Endpoint Independent Filtering" in tools["full-cone"]
    assert "Endpoint Independent Mapping" in tools["restricted-cone"]
    assert "Address Dependent Filtering" in tools["restricted-cone"]
    assert "Address and Port Dependent Mapping" in tools["symmetric"]
    assert "Address and Port Dependent Filtering" in tools["symmetric"]
    # everything it made is gone, and the machine's own namespace never changed
    assert not set(names) & set(_ours())
    assert _root_links() == links_before


async def _emulated_discovery(preset: str) -> tuple[str | None, str | None]:
    with Network(seed=1) as net:
        host = net.host("probe", preset)
        with host.attach():
            seen = await discover_nat(net.stun.address, timeout=0.15, tries=2)
    return (
        seen.mapping.value if seen.mapping else None,
        seen.filtering.value if seen.filtering else None,
    )


@needs_root
async def test_matrix_on_kernel_nat_matches_the_emulated_one() -> None:
    from rtclab.experiments.nat_matrix import nat_matrix

    # every NAT type (open behaves as a cone without the NAT); bench/net_matrix.py runs all
    presets = ["full-cone", "restricted-cone", "port-restricted-cone", "symmetric"]
    result = await nat_matrix(
        presets,
        turn=(False,),  # the NAT decides; relays through namespaces: test_net_firewall.py
        backends=["emulated", "netns"],
        workers=0,
        concurrency=2,  # each namespace peer is a Python process: keep 2 cores responsive
        connect_timeout=10.0,
        progress=False,
    )
    frame = result.frame
    assert result.mismatches.empty, result.mismatches[["a", "b", "servers", "backend", "error"]]
    by = frame.pivot_table(
        index=["a", "b", "servers"],
        columns="backend",
        values="connected",
        aggfunc="first",
        observed=True,
    )
    assert (by["emulated"] == by["netns"]).all()
    assert not _ours()


@needs_root
def test_stale_namespaces_are_removed_and_cleanup_runs_on_failure() -> None:
    stale = "rtclab-999999-1-pub"  # a pid that cannot exist
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netns.cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
    with pytest.raises(RuntimeError, match="boom"), NetnsNetwork() as net:
        net.host("x", "symmetric")
        raise RuntimeError("boom")
    assert not _ours()


@needs_root
async def test_namespace_peers_stream_their_stats_into_the_lab() -> None:
    from rtclab import Lab

    async with Lab(stats_interval=1.0) as lab:
        with NetnsNetwork() as net:
            # no TURN on either side: the connection itself shows that restricted cone lets
            # the symmetric side's new port in (with a relay candidate on one side, aggressive
            # nomination may settle on it when its check answers first: notebook 06)
            alice = await net.peer(
                net.host("alice", "restricted-cone"), room="r", lab=lab, turn=False
            )
            bob = await net.peer(
                net.host("bob", "symmetric"), room="r", lab=lab, turn=False,
                estimator="rtclab.cc:LossBasedAimd",
            )  # fmt: skip
            await alice.wait_connected(timeout=20)
            await bob.wait_connected(timeout=20)
            await asyncio.sleep(3.5)
            samples, events = lab.samples, lab.events
            await alice.close()
            await bob.close()
            assert alice.process.returncode is not None
    video = samples[samples["kind"] == "video"]
    assert set(video["peer"]) == {"alice", "bob"}
    got = video[(video["direction"] == "inbound") & video["frames_per_second"].notna()]
    assert got.groupby("peer")["frames_per_second"].median().between(10, 20).all()
    rtt = video["rtcp_rtt_ms"].dropna()
    assert len(rtt) and (rtt < 50).all()
    # a direct path between the two NATs: every selected pair is host/srflx/prflx
    pairs = video.dropna(subset=["local_candidate_type"])
    assert len(pairs) and set(pairs["local_candidate_type"]) <= {"host", "srflx", "prflx"}
    assert not (pairs[["local_candidate_type", "remote_candidate_type"]] == "relay").any().any()
    lans = {alice.host.address, bob.host.address}
    assert lans <= {"10.0.1.2", "10.0.2.2", "10.0.3.2", "10.0.4.2"}  # behind the routers
    assert set(pairs["local_address"].str.split(":").str[0]) <= lans
    connected = events[events["event"] == "connected"]
    assert set(connected["peer"]) == {"alice", "bob"}
    estimators = events[events["event"] == "estimator"]  # a named estimator in the process
    assert list(zip(estimators["peer"], estimators["value"], strict=True)) == [
        ("bob", "loss-based AIMD")
    ]
    assert not _ours()


async def _stream(
    net: NetnsNetwork,
    lab: Any,
    hosts: dict[str, Any],
    rooms: dict[str, str],
    seconds: float,
    options: dict[str, dict[str, Any]],
) -> Any:
    """A namespace peer on each host in its room, connected, streaming for ``seconds``;
    the lab's samples, taken before the peers close."""
    peers = [await net.peer(h, room=rooms[n], lab=lab, **options[n]) for n, h in hosts.items()]
    for peer in peers:
        await peer.wait_connected(timeout=20)
    await asyncio.sleep(seconds)
    samples = lab.samples
    for peer in peers:
        await peer.close()
    return samples


@needs_root
async def test_impaired_namespace_links_show_up_in_the_lab_stats() -> None:
    """Userspace (NFQUEUE) impairment on a host namespace: 50 ms each way -> RTT ~100 ms;
    5 % random loss -> the receiver reports ~5 % of the media lost."""
    from rtclab import Lab
    from rtclab.net import Link

    async with Lab(stats_interval=1.0) as lab:
        with NetnsNetwork() as net:
            hosts = {
                "slow": net.host("slow", "port-restricted-cone", link=Link(delay_ms=50)),
                "fast": net.host("fast", "port-restricted-cone"),
                "lossy": net.host("lossy", "full-cone", link=Link(loss=0.05), seed=3),
                "sink": net.host("sink", "full-cone"),
            }
            rooms = {"slow": "delay", "fast": "delay", "lossy": "loss", "sink": "loss"}
            options = {n: {"fps": 30, "video": n != "sink"} for n in hosts}
            samples = await _stream(net, lab, hosts, rooms, 15, options)
            lossy = hosts["lossy"].impairment
            assert lossy is not None
            counters = lossy.close()
    video = samples[(samples["kind"] == "video") & (samples["direction"] == "outbound")]
    rtt = video[video["peer"] == "slow"]["rtcp_rtt_ms"].dropna()
    assert len(rtt) >= 5 and rtt.median() == pytest.approx(100, rel=0.15)
    sent = video[video["peer"] == "lossy"].dropna(
        subset=["remote_packets_lost", "remote_packets_received"]
    )
    last = sent.iloc[-1]
    lost, received = last["remote_packets_lost"], last["remote_packets_received"]
    fraction = lost / (lost + received)
    assert last["packets_sent"] > 300
    assert fraction == pytest.approx(0.05, abs=0.02)
    up = counters["up"]
    assert up["lost"] / up["sent"] == pytest.approx(0.05, abs=0.02)
    assert not _ours()


@needs_root
async def test_frame_latency_across_namespaces_follows_the_link_delay() -> None:
    """Namespace peers tag and read frames in their own processes; the interval QoE columns
    reach the lab. 50 ms on one host's link: that host's video reaches the other, and the
    other's reaches it, ~50 ms later than on the undelayed pair (one clock: one kernel)."""
    from rtclab import Lab
    from rtclab.net import Link

    async with Lab(stats_interval=1.0) as lab:
        with NetnsNetwork() as net:
            hosts = {
                "slow": net.host("slow", "full-cone", link=Link(delay_ms=50)),
                "peer": net.host("peer", "full-cone"),
                "a": net.host("a", "full-cone"),
                "b": net.host("b", "full-cone"),
            }
            rooms = {"slow": "delayed", "peer": "delayed", "a": "clean", "b": "clean"}
            options = {n: {"turn": False, "data": False} for n in hosts}
            samples = await _stream(net, lab, hosts, rooms, 6, options)
    video = samples.query("kind == 'video' and direction == 'inbound'").dropna(
        subset=["latency_ms_p50"]
    )
    p50 = video.groupby("peer")["latency_ms_p50"].median()
    assert set(p50.index) == set(hosts)
    clean = max(p50["a"], p50["b"])
    assert clean < 120
    for name in ("slow", "peer"):
        assert 40 <= p50[name] - clean <= 90, p50
    assert video["psnr_db"].median() > 35
    assert video.groupby("peer")["freeze_count"].sum().le(1).all()
    assert not _ours()
