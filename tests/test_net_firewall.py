"""Host firewalls: the policy and its connection tracking (pure), the table of surviving ICE
paths written from the definitions, and the emulated network measuring the same table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import needs_root

from rtclab.experiments.ice_paths import Scenario, compare_ice_paths
from rtclab.net import Network
from rtclab.net.firewall import (
    FIREWALL_PRESETS,
    ICE_PATHS,
    Firewall,
    FirewallTable,
    firewall,
    predict_paths,
)
from rtclab.signaling.server import SignalingServer

#: Written from the definitions (UDP dropped; only TCP to 443 out), TURN on its default
#: ports: UDP/TCP 3478, TLS 5349 — and TLS on 443 where a deployment puts it for such networks.
EXPECTED = {
    None: {"host", "srflx", "relay-udp", "relay-tcp", "relay-tls"},
    "udp-blocked": {"relay-tcp", "relay-tls"},
    "tcp-443-only": set(),
}
EXPECTED_TLS_ON_443 = {None: EXPECTED[None], "udp-blocked": EXPECTED["udp-blocked"],
                       "tcp-443-only": {"relay-tls"}}  # fmt: skip


@pytest.mark.parametrize("preset", list(EXPECTED))
def test_predicted_paths_match_the_table(preset: str | None) -> None:
    survive = {p for p, ok in predict_paths(preset).items() if ok}
    assert survive == EXPECTED[preset]
    on_443 = predict_paths(preset, {"tls": 443})
    assert {p for p, ok in on_443.items() if ok} == EXPECTED_TLS_ON_443[preset]
    assert set(on_443) == set(ICE_PATHS)


def test_unknown_preset_is_named() -> None:
    with pytest.raises(ValueError, match="udp-blocked"):
        firewall("no-udp")
    assert firewall("udp-blocked") is FIREWALL_PRESETS["udp-blocked"]
    assert firewall(None) is None


def test_table_lets_replies_in_and_nothing_else() -> None:
    table = FirewallTable(Firewall("tcp-only-443", udp=True, tcp_ports=frozenset({443})),
                          idle_timeout_s=10)  # fmt: skip
    me, server, stranger = ("10.0.0.2", 5000), ("203.0.113.3", 443), ("203.0.113.9", 443)
    assert not table.inbound(0, "tcp", server, me)  # nothing opened yet
    assert table.outbound(0, "tcp", me, server)
    assert table.inbound(1, "tcp", server, me)  # a reply
    assert not table.inbound(1, "tcp", stranger, me)  # same port, another host
    assert not table.outbound(1, "tcp", me, ("203.0.113.3", 3478))
    assert not table.inbound(12, "tcp", server, me)  # idle for longer than the timeout
    assert table.dropped_outbound == 1 and table.dropped_inbound == 3


def test_udp_blocked_drops_udp_both_ways() -> None:
    table = FirewallTable(FIREWALL_PRESETS["udp-blocked"])
    me, peer = ("10.0.0.2", 5000), ("203.0.113.10", 6000)
    assert not table.outbound(0, "udp", me, peer)
    assert not table.inbound(0, "udp", peer, me)
    assert table.outbound(0, "tcp", me, ("203.0.113.3", 3478))


def test_namespace_rules_say_what_the_policy_says() -> None:
    """The nftables text (pure): what each preset opens, the signaling exception, and
    only established/related traffic let in."""
    from rtclab.net.netns._nft import firewall_rules

    blocked = firewall_rules(FIREWALL_PRESETS["udp-blocked"], allow=("203.0.113.1", 8765))
    only_443 = firewall_rules(FIREWALL_PRESETS["tcp-443-only"])
    assert "meta l4proto tcp accept" in blocked and "udp" not in blocked
    assert "ip daddr 203.0.113.1 tcp dport 8765 accept" in blocked
    assert "tcp dport { 443 } accept" in only_443 and "l4proto" not in only_443
    for rules in (blocked, only_443):
        assert rules.count("policy drop") == 2
        input_chain = rules.split("chain input", 1)[1]
        assert "accept" in input_chain and "dport" not in input_chain


# --- the emulated network: every path, measured (TURN/TLS on its default port 5349) ------

#: path -> (NAT of a, NAT of b, STUN, TURN transports, ICE transport policy): each forces
#: that path
PATHS: dict[str, tuple[str, str, bool, tuple[str, ...], str]] = {
    "host": ("open", "open", False, (), "all"),
    "srflx": ("full-cone", "open", True, (), "all"),
    "relay-udp": ("symmetric", "symmetric", False, ("udp",), "relay"),
    "relay-tcp": ("symmetric", "symmetric", False, ("tcp",), "relay"),
    "relay-tls": ("symmetric", "symmetric", False, ("tls",), "relay"),
}


async def _connects(path: str, preset: str | None, seed: int = 3) -> tuple[bool, Any]:
    from rtclab.ice.inspect import selected_candidate_pair
    from rtclab.peer.peer import Peer

    nat_a, nat_b, stun, turn, policy = PATHS[path]
    with Network(seed=seed) as net:
        ice = net.ice_config(stun=stun, turn=turn or False, ice_transport_policy=policy,
                             connect_timeout=2.5)  # fmt: skip
        async with SignalingServer(port=0) as server:
            assert server.url is not None
            opts: dict[str, Any] = {"room": "r", "ice": ice, "video": False, "audio": False}
            a = Peer("a", server.url, network=net.host("a", nat_a, firewall=preset), **opts)
            b = Peer("b", server.url, network=net.host("b", nat_b), **opts)
            try:
                await b.join()
                await a.join()
                try:
                    await a.wait_connected(count=1, timeout=3.5)
                except (ConnectionError, TimeoutError):
                    return False, net.counters
                return True, selected_candidate_pair(a.connections["b"].pc)
            finally:
                await asyncio.gather(a.close(), b.close())


@pytest.mark.parametrize("preset", [None, "udp-blocked", "tcp-443-only"])
async def test_emulated_udp_paths_survive_as_predicted(preset: str | None) -> None:
    """Each path connects as the table says: under ``udp-blocked`` only TURN over TCP and
    TLS; the blocked packets are counted where the firewall dropped them."""
    for path in PATHS:
        connected, detail = await _connects(path, preset)
        assert connected is (path in EXPECTED[preset]), (path, preset, detail)
        if connected and path.startswith("relay"):
            assert detail.local.type == "relay"
            assert detail.relay_protocol == path.removeprefix("relay-")
        if not connected:
            assert detail["firewall-out"] > 0


# --- namespaces: real nftables, real coturn (UDP/TCP 3478, TLS 443), every path -------------

#: One scenario per path, the offerer behind a full-cone NAT (so srflx differs from host),
#: the answerer public; relay scenarios offer one TURN transport, relay-only.
PATH_SCENARIOS = (
    Scenario("host", "all", (), False),
    Scenario("srflx", "all", (), True),
    Scenario("relay-udp", "relay", ("udp",)),
    Scenario("relay-tcp", "relay", ("tcp",)),
    Scenario("relay-tls", "relay", ("tls",)),
)


@needs_root
@pytest.mark.parametrize("preset", ["udp-blocked", "tcp-443-only"])
async def test_namespace_paths_survive_as_predicted(preset: str) -> None:
    """Under ``udp-blocked`` only TURN/TCP and TURN/TLS connect, under ``tcp-443-only`` only
    TURN/TLS on 443: the table above, measured with nftables and coturn."""
    result = await compare_ice_paths(PATH_SCENARIOS, 1, firewall=preset, nat="full-cone",
                                     connect_timeout=4.0, media_seconds=0.2,
                                     progress=False)  # fmt: skip
    frame = result.frame
    survived = set(frame[frame["connected"]]["scenario"].astype(str))
    assert survived == EXPECTED_TLS_ON_443[preset], frame[["scenario", "connected", "error"]]
    assert (frame["expected"] == frame["connected"]).all()
    for row in frame[frame["connected"]].itertuples():
        assert row.local_candidate_type == "relay"
        assert row.relay_protocol == str(row.scenario).removeprefix("relay-")


@needs_root
async def test_namespace_paths_all_connect_without_a_firewall() -> None:
    """The control: the same five scenarios connect in namespaces with no firewall."""
    from rtclab.experiments.netns_runner import close_shared, run_netns_scenario

    try:
        for scenario in PATH_SCENARIOS:
            row = await run_netns_scenario(
                "full-cone", "open", turn=bool(scenario.turn), turn_transports=scenario.turn,
                stun=scenario.stun, policy=scenario.policy, connect_timeout=4.0,
            )  # fmt: skip
            assert row["connected"], (scenario.name, row.get("error"))
            if scenario.turn:
                assert row["relay_protocol"] == scenario.turn[0]
    finally:
        close_shared()


@needs_root
async def test_namespace_matrix_with_firewalls_relays_over_tcp() -> None:
    """The NAT matrix on kernel NAT with TURN over all three transports offered: behind
    either firewall every pair still connects, through a relay over the one that survives."""
    from rtclab.experiments.nat_matrix import nat_matrix

    result = await nat_matrix(["port-restricted-cone", "symmetric"], turn=[True],
                              backends=["netns"], firewalls=["udp-blocked", "tcp-443-only"],
                              turn_transports=("udp", "tcp", "tls"), workers=0, concurrency=1,
                              connect_timeout=15.0, progress=False)  # fmt: skip
    frame = result.frame
    assert result.mismatches.empty and frame["connected"].all(), frame.to_dict("records")
    assert (frame["local_candidate_type"] == "relay").all()
    blocked = frame[frame["firewall"] == "udp-blocked"]["relay_protocol"]
    assert set(blocked) <= {"tcp", "tls"} and len(blocked) == 4
    assert set(frame[frame["firewall"] == "tcp-443-only"]["relay_protocol"]) == {"tls"}
