"""The emulated network: RFC 5780 probes see each preset's definition, peers connect through
it, and no emulated packet ever reaches a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtclab.ice.config import IceConfig, IceServer
from rtclab.ice.inspect import selected_candidate_pair
from rtclab.net import (
    PRESETS,
    EmulationLeakError,
    Filtering,
    Link,
    Mapping,
    Network,
    blocked_leaks,
    discover_nat,
)
from rtclab.net.emulated import EmulatedTransport, Host
from rtclab.peer.peer import Peer
from rtclab.signaling.server import SignalingServer

FAST = {"timeout": 0.15, "tries": 2}


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "open"])
async def test_probes_see_each_preset(preset: str) -> None:
    behavior = PRESETS[preset]
    assert behavior is not None
    with Network(seed=1) as net:
        host = net.host("probe", preset)
        with host.attach():
            seen = await discover_nat(net.stun.address, **FAST)
    assert seen.behind_nat and seen.mapped is not None
    assert seen.mapped[0] == host.nat.public_ip  # type: ignore[union-attr]
    assert seen.mapping is behavior.mapping
    assert seen.filtering is behavior.filtering


async def test_open_host_sees_no_nat() -> None:
    with Network() as net:
        host = net.host("server", "open")
        with host.attach():
            seen = await discover_nat(net.stun.address, **FAST)
    assert not seen.behind_nat
    assert seen.mapping is Mapping.ENDPOINT_INDEPENDENT
    assert seen.filtering is Filtering.ENDPOINT_INDEPENDENT


@pytest.mark.parametrize("hairpinning", [True, False])
async def test_hairpinning_on_and_off(hairpinning: bool) -> None:
    with Network() as net:
        host = net.host("h", "port-restricted-cone", hairpinning=hairpinning)
        with host.attach():
            seen = await discover_nat(net.stun.address, **FAST)
    assert seen.hairpinning is hairpinning


async def test_mapping_lifetime() -> None:
    """An idle mapping expires: the same socket then gets a new external port."""
    from rtclab.net.discovery import _Probe

    with Network() as net:
        host = net.host("h", "full-cone", mapping_lifetime_s=0.2)
        with host.attach():
            loop = asyncio.get_running_loop()
            transport, probe = await loop.create_datagram_endpoint(
                _Probe, local_addr=(host.address, 0)
            )
        try:
            assert isinstance(probe, _Probe)
            first = await probe.request(net.stun.address, timeout=0.2)
            again = await probe.request(net.stun.address, timeout=0.2)
            await asyncio.sleep(0.3)
            assert host.nat is not None and host.nat.mappings() == []
            later = await probe.request(net.stun.address, timeout=0.2)
        finally:
            transport.close()
    assert first and again and later
    mapped = [m.attributes["XOR-MAPPED-ADDRESS"] for m, _ in (first, again, later)]
    assert mapped[0] == mapped[1] != mapped[2]


async def test_same_seed_same_translations() -> None:
    async def mapped(seed: int) -> Any:
        with Network(seed=seed) as net:
            host = net.host("h", "symmetric")
            with host.attach():
                return (await discover_nat(net.stun.address, hairpin=False, **FAST)).mapped

    assert await mapped(5) == await mapped(5)


@contextlib.asynccontextmanager
async def _peers(a: Host, b: Host, ice: IceConfig) -> AsyncIterator[tuple[Peer, Peer]]:
    """Data-only peers "a" on host ``a`` and "b" on ``b``, joined (a offers), then closed."""
    async with SignalingServer(port=0) as server:
        assert server.url is not None
        opts: dict[str, Any] = {"room": "r", "ice": ice, "video": False, "audio": False}
        pa = Peer("a", server.url, network=a, **opts)
        pb = Peer("b", server.url, network=b, **opts)
        try:
            await pb.join()
            await pa.join()
            yield pa, pb
        finally:
            await asyncio.gather(pa.close(), pb.close())


async def _connect(
    net: Network,
    a: str,
    b: str,
    *,
    turn: bool | tuple[str, ...],
    link: Link | None = None,
    urls: tuple[str, ...] = (),
    **ice_options: Any,
) -> Any:
    ice = net.ice_config(turn=turn, connect_timeout=3.0, **ice_options)
    if urls:  # TURN URLs of the network's server, given in full
        extra = tuple(IceServer(u, net.TURN_USER, net.TURN_PASSWORD) for u in urls)
        ice = ice.replace(ice_servers=ice.ice_servers + extra)
    async with _peers(net.host("a", a, link=link), net.host("b", b), ice) as (pa, _):
        try:
            await pa.wait_connected(count=1, timeout=4.0)
        except (ConnectionError, TimeoutError):
            return None
        net.last_candidates = pa.candidates()  # type: ignore[attr-defined]
        return selected_candidate_pair(pa.connections["b"].pc)


async def test_peers_connect_through_nats_and_turn() -> None:
    with Network(seed=2) as net:
        pair = await _connect(net, "symmetric", "full-cone", turn=False)
        assert pair is not None and "relay" not in (
            pair.local.type,
            pair.remote.type,
        )
    with Network(seed=2) as net:
        assert await _connect(net, "symmetric", "symmetric", turn=False) is None
    with Network(seed=2) as net:
        pair = await _connect(net, "symmetric", "symmetric", turn=True)
        assert pair is not None
        assert "relay" in (pair.local.type, pair.remote.type)
        assert net.turn.relayed_packets > 0


async def test_no_emulated_packet_reaches_a_real_socket() -> None:
    """Every real socket operation during an emulated connection stays on loopback (the
    signaling server), and a real socket aimed at an emulated address is refused."""
    seen: list[tuple[str, Any]] = []
    recording = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if recording and event in ("socket.bind", "socket.connect", "socket.sendto"):
            seen.append((event, args[1] if len(args) > 1 else None))

    sys.addaudithook(hook)
    try:
        with Network(seed=3) as net:
            assert await _connect(net, "port-restricted-cone", "open", turn=True) is not None
            emulated = set(net._by_ip) | set(net._servers) | set(net._nat_by_ip)
            # the guard: a real socket may not bind, connect or send to an emulated address
            before = len(blocked_leaks())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                with pytest.raises(EmulationLeakError):
                    sock.sendto(b"x", (net.TURN_IP, 3478))
                with pytest.raises(EmulationLeakError):
                    sock.bind((net.hosts["a"].address, 0))
            loop = asyncio.get_running_loop()
            with pytest.raises(OSError):  # no host attached: a real socket, refused
                await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(net.STUN_IP, 3478)
                )
            assert len(blocked_leaks()) >= before + 3
    finally:
        recording = False
    addresses = [a for _, a in seen if isinstance(a, tuple) and a]
    assert addresses, "the audit hook saw nothing (the signaling connection at least)"
    # the guard's audit hook runs first and refused the three attempts: none got this far
    leaked = [(e, a) for e, a in seen if isinstance(a, tuple) and a and a[0] in emulated]
    assert leaked == []
    real = {a[0] for _, a in seen if isinstance(a, tuple) and a and a[0] not in emulated}
    assert real <= {"127.0.0.1", "0.0.0.0", ""}, real


async def test_network_close_stops_guarding() -> None:
    net = Network()
    ip = net.host("x").address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(EmulationLeakError):  # guarded while the network lives
            sock.connect((ip, 9))
    net.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((ip, 9))  # UDP connect sends nothing; allowed once the network is gone


@pytest.mark.parametrize(("transport", "port"), [("tcp", None), ("tls", None), ("tls", 443)])
async def test_relay_only_pair_connects_over_turn_tcp_and_tls(
    transport: str, port: int | None
) -> None:
    """Both peers relay-only, each reaching the emulated TURN server over a TCP (or TLS, on
    5349 or 443) connection through its NAT; the relayed side stays UDP."""
    with Network(seed=4) as net:
        url = net.turn_url_for(transport, port)
        pair = await _connect(
            net, "symmetric", "port-restricted-cone", turn=False, urls=(url,), stun=False,
            ice_transport_policy="relay", tls_ca_file=net.ca_file,
        )  # fmt: skip
        assert pair is not None, f"no relay-only connection over TURN/{transport}"
        assert (pair.local.type, pair.remote.type) == ("relay", "relay")
        assert pair.protocol == "udp" and pair.relay_protocol == transport
        assert pair.local.url == url  # CandidateInfo.url
        local = net.last_candidates.query("side == 'local'")  # type: ignore[attr-defined]
        assert list(local["type"]) == ["relay"] and list(local["url"]) == [url]
        assert (
            url.startswith("turns:" if transport == "tls" else "turn:") and "transport=tcp" in url
        )
        assert port is None or f":{port}?" in url
        assert net.counters["tcp-connected"] >= 2 and net.turn.relayed_packets > 0
        assert net.counters["sent"] == 0  # not one UDP datagram left a host


async def test_turn_tls_needs_the_lab_ca_and_tcp_needs_a_listener() -> None:
    """Without trusting the network's CA the TLS handshake fails (a named turn-tls failure);
    a TCP connection to a port nobody listens on is refused (turn-unreachable); a peer with
    both servers fails naming each."""
    from aioice import turn as aioice_turn

    with Network(seed=5) as net:
        host = net.host("h", "full-cone")
        with host.attach():
            loop = asyncio.get_running_loop()
            with pytest.raises(ConnectionRefusedError):
                await loop.create_connection(asyncio.Protocol, net.STUN_IP, 3478)
            with pytest.raises(ssl.SSLCertVerificationError):
                await aioice_turn.create_turn_endpoint(
                    asyncio.DatagramProtocol, net.turn.tls_address, net.TURN_USER,
                    net.TURN_PASSWORD, ssl=True, transport="tcp",
                )  # fmt: skip
        refused = IceServer(f"turn:{net.STUN_IP}:3478?transport=tcp", "u", "p")
        servers = (*net.ice_servers(stun=False, turn=("tls",)), refused)
        ice = IceConfig(ice_servers=servers, ice_transport_policy="relay", connect_timeout=2)
        async with _peers(host, net.host("b"), ice) as (peer, _):
            with pytest.raises((ConnectionError, TimeoutError)):
                await peer.wait_connected(count=1, timeout=3.0)
            failures = {f.kind: f for f in peer.connections["b"].gathering.failures}
            assert set(failures) == {"turn-tls", "turn-unreachable"}, failures
            assert "tls_ca_file" in failures["turn-tls"].message
            assert failures["turn-unreachable"].url == refused.urls
            # the connection's reason names each server's own failure
            reason = str(peer.connections["b"].failure_reason)
            assert all(f.message in reason for f in failures.values()), reason


def test_stream_session_frames_stun_and_padded_channel_data() -> None:
    """RFC 8656 §12.5 framing, split anywhere: STUN messages whole, ChannelData padded."""
    from aioice import stun

    from rtclab.net.servers import StreamSession

    request = bytes(
        stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    )
    channel = b"\x40\x00\x00\x05hello"  # 5 bytes of data: 3 bytes of padding on a stream
    wire = request + channel + b"\x00\x00\x00" + request
    session = StreamSession()
    messages: list[bytes] = []
    for i in range(0, len(wire), 7):
        messages += session.receive(wire[i : i + 7])[0]
    assert messages == [request, channel + b"\x00\x00\x00", request]
    assert session.send(channel) == channel + b"\x00\x00\x00"


@pytest.mark.parametrize(("preset", "srflx"), [("symmetric", 2), ("full-cone", 1)])
async def test_every_stun_server_is_asked_at_once(preset: str, srflx: int) -> None:
    """Two STUN URLs: behind a NAT whose mapping depends on the destination each server sees
    its own mapping (two srflx candidates, each labelled with its URL); behind an
    endpoint-independent one both see the same address (one candidate, RFC 8445 §5.1.3)."""
    with Network(seed=6) as net:
        servers = tuple(IceServer(url) for url in net.stun_urls)
        a, b = net.host("a", preset), net.host("b", "open")
        async with _peers(a, b, IceConfig(ice_servers=servers, connect_timeout=3.0)) as (pa, _):
            await pa.wait_connected(count=1, timeout=4.0)
            frame = pa.candidates()
            gathering = pa.connections["b"].gathering
        local = frame[(frame["side"] == "local") & (frame["type"] == "srflx")]
        assert len(local) == srflx, local
        assert set(local["address"]) == {a.nat.public_ip}  # type: ignore[union-attr]
        assert set(local["url"]) <= set(net.stun_urls) and local["url"].notna().all()
        if srflx == 2:
            assert sorted(local["url"]) == sorted(net.stun_urls)
            assert local["port"].nunique() == 2
        assert sorted(gathering.stun_urls) == sorted(net.stun_urls)  # both answered
        assert gathering.failures == []


async def test_a_slow_server_is_not_waited_for_and_its_late_allocation_is_released() -> None:
    """With a 200 ms round trip TURN/UDP allocates in 2 round trips, TURN/TLS needs 2 more
    (TCP and TLS 1.3 handshakes): gathering completes gathering_grace after the UDP relay
    answered, the TLS answer comes too late, is logged as such and its allocation released."""
    with Network(seed=7) as net:
        slow = Link(delay_ms=100)  # each way
        a, b = net.host("a", "full-cone", link=slow), net.host("b", "full-cone", link=slow)
        servers = net.ice_servers(stun=False, turn=("udp", "tls"))
        ice = IceConfig(
            ice_servers=servers, tls_ca_file=net.ca_file, ice_transport_policy="relay",
            connect_timeout=4, gathering_grace=0.1,
        )  # fmt: skip
        async with _peers(a, b, ice) as (pa, pb):
            await pa.wait_connected(count=1, timeout=5.0)
            gathering = pa.connections["b"].gathering
            took = gathering.elapsed_ms(gathering.finished)
            assert 400 <= took < 800, took  # 2 round trips + the grace; TLS needs 4
            frame = pa.candidates()
            relays = frame[(frame["side"] == "local") & (frame["type"] == "relay")]
            assert list(relays["url"]) == [net.turn_url_for("udp")]
            late = [pa.connections["b"].gathering, pb.connections["a"].gathering]
            for _ in range(60):  # the TLS allocations answer ~0.8 s in, then are released
                await asyncio.sleep(0.05)
                if all(log.late for log in late):
                    break
            # (aiortc gathers once per transceiver, so the URL may come once for each)
            assert all(set(log.late) == {net.turn_url_for("tls")} for log in late)
            assert any(e.event == "ice-server-late" for e in pa.events)
            await asyncio.sleep(1.0)  # their Refresh(0) and TLS close cross the slow link
            assert [k for k in net.turn._allocations if k[0] == "tcp"] == []
            assert len(net.turn._allocations) >= 2  # the UDP relays in use stay
            assert pa.connections["b"].connected_at is not None


async def test_an_attached_host_refuses_a_real_socket_and_real_addresses_pass() -> None:
    """Both routed loop methods: ``sock=`` on an emulated host is refused (EPERM) by name,
    and with no host attached the loop opens a real socket as before."""
    loop = asyncio.get_running_loop()
    with Network() as net, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as real:
        host = net.host("h", "open")
        with host.attach():
            with pytest.raises(OSError, match="cannot adopt a real socket"):
                await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=real)
            with pytest.raises(OSError, match="cannot adopt a real socket"):
                await loop.create_connection(asyncio.Protocol, sock=real)
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(host.address, 0)
            )
            assert isinstance(transport, EmulatedTransport)
            transport.close()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        assert not isinstance(transport, EmulatedTransport)
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"  # a kernel socket
        transport.close()
